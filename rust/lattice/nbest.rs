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

/// A finished list feeding position `e`: the `len` hypotheses at `arena[off..]` (best first),
/// each extended by edge `s..e` with piece `id` and score `v`.
#[derive(Clone, Copy, Debug)]
struct Source {
    off: u32,
    len: u32,
    v: f64,
    s: u32,
    id: u32,
}

/// Buffers reused across calls on one thread (one allocation set per thread, not per text).
#[derive(Default)]
struct Scratch {
    pools: Vec<Vec<Source>>,
    arena: Vec<Hyp>,
    span: Vec<(u32, u32)>,
    heads: Vec<u32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// The `k` highest-scoring segmentations, best first. Ties keep SentencePiece's edge order
/// (earlier starts first), so the first result is the Viterbi path up to f32-vs-f64 rounding.
///
/// No lattice is built: like Viterbi, one pass over start positions records each finished
/// list as a source of the positions its outgoing edges reach (a ring of reused buffers),
/// and a position's best `k` are merged from its sources when the pass reaches it.
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
    SCRATCH.with(|c| match c.try_borrow_mut() {
        Ok(mut sc) => {
            let r = run(model, text, k, &mut sc);
            // Do not keep the buffers of a huge text alive on this thread.
            if sc.arena.capacity() > 1 << 22 || sc.span.capacity() > 1 << 22 {
                *sc = Scratch::default();
            }
            r
        }
        Err(_) => run(model, text, k, &mut Scratch::default()),
    })
}

fn run(model: &Model, text: &[u8], k: usize, sc: &mut Scratch) -> Result<Vec<Scored>> {
    let n = text.len();
    let size = ring_size(model);
    let mask = size - 1;
    let Scratch {
        pools,
        arena,
        span,
        heads,
    } = sc;
    pools.resize_with(size.max(pools.len()), Vec::new);
    for p in pools.iter_mut() {
        p.clear();
    }
    arena.clear();
    arena.push(Hyp {
        score: 0.0,
        prev: u32::MAX,
        s: 0,
        id: u32::MAX,
    });
    span.clear();
    span.resize(n + 1, (0, 0));
    span[0] = (0, 1);
    for s in 0..=n {
        if s > 0 {
            let pool = &mut pools[s & mask];
            if pool.is_empty() {
                continue;
            }
            let begin = arena.len();
            merge_top_k(pool, arena, heads, k);
            pool.clear();
            if arena.len() >= u32::MAX as usize {
                return Err(Error::Limit(
                    "k-best search exceeds 2**32 partial paths".into(),
                ));
            }
            span[s] = (begin as u32, (arena.len() - begin) as u32);
        }
        if s == n {
            break;
        }
        let (off, len) = span[s];
        if len == 0 {
            continue;
        }
        model.edges_at(text, s, |e, id| {
            pools[e & mask].push(Source {
                off,
                len,
                v: model.score(id),
                s: s as u32,
                id,
            });
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

/// Appends to `arena` the best `k` extensions over all `sources`, best first.
///
/// Each source is already sorted (best first), so this is a k-way merge that looks at no more
/// than `k` entries per source instead of sorting all of them. Equal scores (by `total_cmp`)
/// come out in source order, then rank order: the order a stable sort of the sources'
/// concatenation would give, which is SentencePiece's edge order.
fn merge_top_k(sources: &[Source], arena: &mut Vec<Hyp>, heads: &mut Vec<u32>, k: usize) {
    if let [src] = sources {
        let take = (src.len as usize).min(k);
        for r in src.off..src.off + take as u32 {
            let score = arena[r as usize].score + src.v;
            arena.push(Hyp {
                score,
                prev: r,
                s: src.s,
                id: src.id,
            });
        }
        return;
    }
    heads.clear();
    heads.resize(sources.len(), 0);
    for _ in 0..k {
        let mut best: Option<(usize, f64)> = None;
        for (j, src) in sources.iter().enumerate() {
            let h = heads[j];
            if h >= src.len {
                continue;
            }
            let score = arena[(src.off + h) as usize].score + src.v;
            let better = match best {
                None => true,
                Some((_, b)) => score.total_cmp(&b) == std::cmp::Ordering::Greater,
            };
            if better {
                best = Some((j, score));
            }
        }
        let Some((j, score)) = best else { break };
        let src = &sources[j];
        let r = src.off + heads[j];
        heads[j] += 1;
        arena.push(Hyp {
            score,
            prev: r,
            s: src.s,
            id: src.id,
        });
    }
}
