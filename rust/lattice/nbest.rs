//! Exact k-best segmentations for any text length.
//!
//! SentencePiece runs A* with a shrinking agenda and silently falls back to the Viterbi path on
//! long lines. Here every position keeps the k best partial paths ending there: a path in the
//! global top k has its prefix among the top k at every position it visits (otherwise k better
//! completions would exist), so merging the incoming lists position by position is exact.
//! Cost O(edges · k · log k) time and O(L · k) memory, no cap, no fallback.

use super::model::Model;
use super::viterbi::ring_size;
use crate::error::{Error, Result};

/// Largest `k` accepted (memory is O(L·k)).
pub const MAX_K: usize = 1 << 20;

/// Largest number of kept partial paths (24 bytes each: 1.5 GiB). The arena grows as
/// `Σ_positions min(k, paths ending there)`, so long texts with large `k` are refused here
/// with a clear error instead of exhausting memory; u32 arena indices stay far from overflow.
pub const MAX_PARTIAL_PATHS: usize = 1 << 26;

#[derive(Clone, Copy, Debug)]
struct Hyp {
    score: f64,
    /// Arena index of the partial path this one extends (`u32::MAX` at the root).
    prev: u32,
    /// Start of the last edge (its end is the position whose list holds this entry).
    s: u32,
    id: u32,
}

/// One segmentation as `(start, end, id)` edges, and its score `Σ v`.
pub type Scored = (Vec<(usize, usize, u32)>, f64);

/// The `k` highest-scoring segmentations, best first. Ties keep SentencePiece's edge order
/// (earlier starts first), so the first result is the Viterbi path up to f32-vs-f64 rounding.
///
/// No lattice is built: like Viterbi, one pass over start positions pushes each finished
/// list along the outgoing edges into per-end candidate pools (a ring of reused buffers),
/// and a position's pool is cut to its best `k` when the pass reaches it.
pub fn nbest(model: &Model, text: &[u8], k: usize) -> Result<Vec<Scored>> {
    if k > MAX_K {
        return Err(Error::Limit(format!("k={k} exceeds the limit of {MAX_K}")));
    }
    if k == 0 {
        return Ok(Vec::new());
    }
    let n = text.len();
    if n == 0 {
        return Ok(vec![(Vec::new(), 0.0)]);
    }
    if n >= u32::MAX as usize {
        return Err(Error::Limit(format!(
            "text of {n} bytes exceeds the 4 GiB limit"
        )));
    }
    // The arena will hold exactly `Σ_e min(k, Σ_{s→e} kept(s))` entries: count them first
    // (one trie pass, 8 bytes per position) so an oversized request is refused before any
    // of it is allocated.
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
    drop(kept);
    let size = ring_size(model);
    let mask = size - 1;
    let mut pools: Vec<Vec<Hyp>> = vec![Vec::new(); size];
    let mut arena: Vec<Hyp> = vec![Hyp {
        score: 0.0,
        prev: u32::MAX,
        s: 0,
        id: u32::MAX,
    }];
    let mut span = vec![(0u32, 0u32); n + 1];
    span[0] = (0, 1);
    for s in 0..=n {
        if s > 0 {
            let pool = &mut pools[s & mask];
            if pool.is_empty() {
                continue;
            }
            // Stable: equal scores keep push order (earlier start, then better rank).
            pool.sort_by(|a, b| b.score.total_cmp(&a.score));
            pool.truncate(k);
            debug_assert!(arena.len() + pool.len() <= MAX_PARTIAL_PATHS);
            span[s] = (arena.len() as u32, pool.len() as u32);
            arena.extend_from_slice(pool);
            pool.clear();
        }
        if s == n {
            break;
        }
        let (off, len) = span[s];
        let arena_ref = &arena;
        model.edges_at(text, s, |e, id| {
            let v = model.score(id);
            let pool = &mut pools[e & mask];
            for r in off..off + len {
                pool.push(Hyp {
                    score: arena_ref[r as usize].score + v,
                    prev: r,
                    s: s as u32,
                    id,
                });
            }
        });
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
        let mut e = n;
        while h.prev != u32::MAX {
            path.push((h.s as usize, e, h.id));
            e = h.s as usize;
            h = arena[h.prev as usize];
        }
        path.reverse();
        out.push((path, score));
    }
    Ok(out)
}
