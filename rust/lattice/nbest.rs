//! Exact k-best segmentations for any text length.
//!
//! SentencePiece runs A* with a shrinking agenda and silently falls back to the Viterbi path on
//! long lines. Here every position keeps the k best partial paths ending there: a path in the
//! global top k has its prefix among the top k at every position it visits (otherwise k better
//! completions would exist), so merging the incoming lists position by position is exact.
//! Cost O(edges · k · log k) time and O(L · k) memory, no cap, no fallback.

use super::graph::Lattice;
use super::model::Model;
use crate::error::{Error, Result};

/// Largest `k` accepted (memory is O(L·k)).
pub const MAX_K: usize = 1 << 20;

#[derive(Clone, Copy, Debug)]
struct Hyp {
    score: f64,
    /// Arena index of the partial path this one extends (`u32::MAX` at the root).
    prev: u32,
    /// Index of the last edge in `Lattice::edges`.
    edge: u32,
}

/// One segmentation as `(start, end, id)` edges, and its score `Σ v`.
pub type Scored = (Vec<(usize, usize, u32)>, f64);

/// The `k` highest-scoring segmentations, best first. Ties keep SentencePiece's edge order
/// (earlier starts first), so the first result is the Viterbi path up to f32-vs-f64 rounding.
pub fn nbest(model: &Model, text: &[u8], lat: &Lattice, k: usize) -> Result<Vec<Scored>> {
    if k > MAX_K {
        return Err(Error::Limit(format!("k={k} exceeds the limit of {MAX_K}")));
    }
    if k == 0 {
        return Ok(Vec::new());
    }
    let n = lat.n;
    if n == 0 {
        return Ok(vec![(Vec::new(), 0.0)]);
    }
    let mut arena: Vec<Hyp> = vec![Hyp {
        score: 0.0,
        prev: u32::MAX,
        edge: u32::MAX,
    }];
    let mut span = vec![(0u32, 0u32); n + 1];
    span[0] = (0, 1);
    let mut cands: Vec<Hyp> = Vec::new();
    for e in 1..=n {
        cands.clear();
        for &ki in lat.into_idx(e) {
            let ed = lat.edges[ki as usize];
            let (off, len) = span[ed.s as usize];
            let v = model.score(ed.id);
            for r in off..off + len {
                cands.push(Hyp {
                    score: arena[r as usize].score + v,
                    prev: r,
                    edge: ki,
                });
            }
        }
        if cands.len() > k {
            // Stable order for ties: candidates were pushed in start order.
            cands.sort_by(|a, b| b.score.total_cmp(&a.score));
            cands.truncate(k);
        } else {
            cands.sort_by(|a, b| b.score.total_cmp(&a.score));
        }
        if arena.len() + cands.len() >= u32::MAX as usize {
            return Err(Error::Limit(
                "k-best search exceeds 2**32 partial paths".into(),
            ));
        }
        span[e] = (arena.len() as u32, cands.len() as u32);
        arena.extend_from_slice(&cands);
    }
    let (off, len) = span[n];
    if len == 0 {
        let furthest = (0..n).rev().find(|&i| span[i].1 > 0).unwrap_or(0);
        return Err(model.unsegmentable(text, furthest));
    }
    let mut out = Vec::with_capacity(len as usize);
    for r in off..off + len {
        let mut path = Vec::new();
        let mut h = arena[r as usize];
        let score = h.score;
        while h.prev != u32::MAX {
            let ed = lat.edges[h.edge as usize];
            path.push((ed.s as usize, ed.e as usize, ed.id));
            h = arena[h.prev as usize];
        }
        path.reverse();
        out.push((path, score));
    }
    Ok(out)
}
