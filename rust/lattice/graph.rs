//! An explicit lattice (edges in flat arrays, indexed by start and by end) for the algorithms
//! that need more than one pass: FFBS, k-best, sampling without replacement, marginals, token
//! healing. Viterbi and perfect sampling never build one.

use super::model::{Model, Weights};
use crate::error::{Error, Result};

/// Largest explicit lattice (16 bytes per edge with its by-end index: 4 GiB).
pub const MAX_EDGES: usize = 1 << 28;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    pub s: u32,
    pub e: u32,
    pub id: u32,
}

#[derive(Debug, Default)]
pub struct Lattice {
    /// Number of positions minus one (the text length in bytes).
    pub n: usize,
    /// Edges sorted by start, then by end (SentencePiece's order).
    pub edges: Vec<Edge>,
    start_off: Vec<u32>,
    end_off: Vec<u32>,
    by_end: Vec<u32>,
}

/// `ln(exp(a) + exp(b))` without overflow; `-inf` is the identity.
#[inline(always)]
pub fn logaddexp(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    if b == f64::NEG_INFINITY {
        return a;
    }
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    hi + (lo - hi).exp().ln_1p()
}

impl Lattice {
    pub fn build(model: &Model, text: &[u8]) -> Result<Lattice> {
        let n = text.len();
        if n >= u32::MAX as usize {
            return Err(Error::Limit(format!(
                "text of {n} bytes exceeds the 4 GiB limit of lattice algorithms"
            )));
        }
        let mut edges = Vec::with_capacity(n * 2);
        let mut start_off = Vec::with_capacity(n + 2);
        for s in 0..n {
            start_off.push(edges.len() as u32);
            if !model.byte_level() && (text[s] & 0xC0) == 0x80 {
                continue;
            }
            model.edges_at(text, s, |e, id| {
                edges.push(Edge {
                    s: s as u32,
                    e: e as u32,
                    id,
                })
            });
            // One position adds at most `max_edge` edges, so checking here keeps the u32
            // offsets exact and memory (16 bytes per edge) bounded.
            if edges.len() > MAX_EDGES {
                return Err(Error::Limit(format!(
                    "the lattice of this text has more than {MAX_EDGES} edges (text of {n} \
                     bytes); split the text"
                )));
            }
        }
        start_off.push(edges.len() as u32);
        start_off.push(edges.len() as u32);
        // Counting sort by end.
        let mut end_off = vec![0u32; n + 2];
        for ed in &edges {
            end_off[ed.e as usize + 1] += 1;
        }
        for i in 1..end_off.len() {
            end_off[i] += end_off[i - 1];
        }
        let mut fill = end_off.clone();
        let mut by_end = vec![0u32; edges.len()];
        for (k, ed) in edges.iter().enumerate() {
            let slot = &mut fill[ed.e as usize];
            by_end[*slot as usize] = k as u32;
            *slot += 1;
        }
        Ok(Lattice {
            n,
            edges,
            start_off,
            end_off,
            by_end,
        })
    }

    /// Edges starting at `s`.
    #[inline]
    pub fn out(&self, s: usize) -> &[Edge] {
        &self.edges[self.start_off[s] as usize..self.start_off[s + 1] as usize]
    }

    /// Indices into `edges` of the edges starting at `s`.
    #[inline]
    pub fn out_range(&self, s: usize) -> std::ops::Range<usize> {
        self.start_off[s] as usize..self.start_off[s + 1] as usize
    }

    /// Indices (into `edges`) of the edges ending at `e`, in start order.
    #[inline]
    pub fn into_idx(&self, e: usize) -> &[u32] {
        &self.by_end[self.end_off[e] as usize..self.end_off[e + 1] as usize]
    }

    /// `log Z(i)`: the log-sum of `exp(α·score)` over paths `0 → i`.
    pub fn forward(&self, w: &Weights) -> Vec<f64> {
        let mut z = vec![f64::NEG_INFINITY; self.n + 1];
        z[0] = 0.0;
        for e in 1..=self.n {
            let mut acc = f64::NEG_INFINITY;
            for &k in self.into_idx(e) {
                let ed = self.edges[k as usize];
                acc = logaddexp(acc, z[ed.s as usize] + w.log_w[ed.id as usize]);
            }
            z[e] = acc;
        }
        z
    }

    /// `log B(i)`: the log-sum of `exp(α·score)` over paths `i → n`.
    pub fn backward(&self, w: &Weights) -> Vec<f64> {
        let mut b = vec![f64::NEG_INFINITY; self.n + 1];
        b[self.n] = 0.0;
        for s in (0..self.n).rev() {
            let mut acc = f64::NEG_INFINITY;
            for ed in self.out(s) {
                acc = logaddexp(acc, w.log_w[ed.id as usize] + b[ed.e as usize]);
            }
            b[s] = acc;
        }
        b
    }

    /// Error unless the end is reachable.
    pub fn check_reachable(&self, model: &Model, text: &[u8], log_z: &[f64]) -> Result<()> {
        if self.n > 0 && log_z[self.n] == f64::NEG_INFINITY {
            let furthest = (0..self.n)
                .rev()
                .find(|&i| log_z[i] > f64::NEG_INFINITY)
                .unwrap_or(0);
            return Err(model.unsegmentable(text, furthest));
        }
        Ok(())
    }
}
