//! Exact quantities of `p_α` over a text's lattice: `log Z_α`, entropy, `log p_α(w)` of a given
//! segmentation, edge / piece / boundary marginals, expected token count, the E-step of unigram
//! EM ([`expected_counts`]) and the token-healing distribution ([`prefix_candidates`]).
//!
//! Forward `Z(i)` and backward `B(i)` run in the log domain over a built [`Lattice`]; an edge's
//! marginal is `Z(s)·exp(α v)·B(e)/Z`, a boundary's `Z(i)·B(i)/Z`; the entropy comes from the
//! forward values alone ([`entropy_forward`]).

use super::graph::{logaddexp, Lattice};
use super::model::{Model, Weights};
use super::vocab::PieceKind;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Marginals {
    pub log_z: f64,
    pub entropy: f64,
    /// Expected number of lattice edges on the path (UNK characters count one each, before
    /// merging).
    pub expected_tokens: f64,
    /// `E[score]` under `p_α`.
    pub expected_score: f64,
    /// Expected count per piece id, only ids with non-zero mass, sorted by id.
    pub piece_counts: Vec<(u32, f64)>,
    /// Probability that a token boundary falls at each byte offset `0..=n` of the prepared text.
    pub boundary: Vec<f64>,
    /// Every edge `(start, end, id)` with its marginal probability.
    pub edges: Vec<(usize, usize, u32, f64)>,
}

/// Forward and backward log-partitions, with the end checked reachable.
fn passes(model: &Model, text: &[u8], lat: &Lattice, w: &Weights) -> Result<(Vec<f64>, Vec<f64>)> {
    let z = lat.forward(w);
    lat.check_reachable(model, text, &z)?;
    let b = lat.backward(w);
    Ok((z, b))
}

pub fn log_partition(model: &Model, text: &[u8], lat: &Lattice, w: &Weights) -> Result<f64> {
    let z = lat.forward(w);
    lat.check_reachable(model, text, &z)?;
    Ok(z[lat.n])
}

pub fn marginals(model: &Model, text: &[u8], lat: &Lattice, w: &Weights) -> Result<Marginals> {
    let (z, b) = passes(model, text, lat, w)?;
    let n = lat.n;
    let lz = z[n];
    // One extra slot for the virtual UNK label of dictionaries without an UNK piece.
    let mut counts = vec![0f64; model.vocab_size() + 1];
    let mut edges = Vec::with_capacity(lat.edges.len());
    let mut expected_tokens = 0.0;
    let mut expected_score = 0.0;
    for ed in &lat.edges {
        let lp = z[ed.s as usize] + w.log_w[ed.id as usize] + b[ed.e as usize] - lz;
        let p = if lp == f64::NEG_INFINITY {
            0.0
        } else {
            lp.exp()
        };
        counts[ed.id as usize] += p;
        expected_tokens += p;
        expected_score += p * model.score(ed.id);
        edges.push((ed.s as usize, ed.e as usize, ed.id, p));
    }
    let boundary = (0..=n)
        .map(|i| {
            let lp = z[i] + b[i] - lz;
            if lp == f64::NEG_INFINITY {
                0.0
            } else {
                lp.exp().min(1.0)
            }
        })
        .collect();
    let piece_counts = counts
        .iter()
        .enumerate()
        .filter(|(_, &c)| c > 0.0)
        .map(|(i, &c)| (i as u32, c))
        .collect();
    let entropy = entropy_forward(lat, w, &z);
    Ok(Marginals {
        log_z: lz,
        entropy,
        expected_tokens,
        expected_score,
        piece_counts,
        boundary,
        edges,
    })
}

/// Entropy of `p_α` from the forward log-partitions `z`. Read from the end, a path is a
/// Markov chain: the last edge into `e` is `s → e` with probability
/// `q = Z(s)·exp(α v)/Z(e)`, so `H(e) = Σ q·(−ln q + H(s))` and the entropy is `H(n)`. Each
/// `−ln q = ln Z(e) − ln Z(s) − α v` is a difference of neighbouring forward values, whose
/// error stays at their own rounding. The textbook `ln Z − α·E[score]` subtracts two totals
/// that grow with α, and the error of `E[score]` is multiplied by α: at α = 5·10⁶ it gave
/// 12.8 nats for a text with 9.4 nats' worth of segmentations.
fn entropy_forward(lat: &Lattice, w: &Weights, z: &[f64]) -> f64 {
    let mut h = vec![0f64; lat.n + 1];
    for e in 1..=lat.n {
        if z[e] == f64::NEG_INFINITY {
            continue;
        }
        let (mut mass, mut acc) = (0.0, 0.0);
        for &k in lat.into_idx(e) {
            let ed = lat.edges[k as usize];
            let s = ed.s as usize;
            let neg_log_q = z[e] - z[s] - w.log_w[ed.id as usize];
            if neg_log_q == f64::INFINITY {
                continue;
            }
            let q = (-neg_log_q).exp();
            mass += q;
            acc += q * (neg_log_q + h[s]);
        }
        // The `q` sum to 1 only up to the rounding of `z`; a bias of 10⁻¹¹ per position
        // compounds through `H(s)` over a long text (6·10⁻⁹ relative over 10⁶ positions), so
        // each position's distribution is renormalised: `H = Σ q̂·(−ln q̂ + H(s))`, `q̂ = q/mass`.
        h[e] = acc / mass + mass.ln();
    }
    // Rounding can push a point mass a hair below zero.
    h[lat.n].max(0.0)
}

/// Entropy of `p_α` (nats).
pub fn entropy(model: &Model, text: &[u8], lat: &Lattice, w: &Weights) -> Result<f64> {
    let z = lat.forward(w);
    lat.check_reachable(model, text, &z)?;
    Ok(entropy_forward(lat, w, &z))
}

/// The E-step of unigram EM: adds each piece's expected count under `p_α` to `counts`
/// (indexed by id, length `vocab_size`) and returns `log Z_α`.
pub fn expected_counts(model: &Model, text: &[u8], w: &Weights, counts: &mut [f64]) -> Result<f64> {
    if counts.len() != model.vocab_size() {
        return Err(Error::invalid(format!(
            "counts has {} entries, the vocabulary {}",
            counts.len(),
            model.vocab_size()
        )));
    }
    let lat = Lattice::build(model, text)?;
    let (z, b) = passes(model, text, &lat, w)?;
    let lz = z[lat.n];
    for ed in &lat.edges {
        let lp = z[ed.s as usize] + w.log_w[ed.id as usize] + b[ed.e as usize] - lz;
        if lp > f64::NEG_INFINITY {
            // The virtual UNK label is not a piece: it has no count slot.
            if let Some(c) = counts.get_mut(ed.id as usize) {
                *c += lp.exp();
            }
        }
    }
    Ok(lz)
}

/// `log Σ exp(α·score(w))` over the segmentations `w` whose output ids (after UNK merging and
/// byte fallback) equal `ids`. Usually exactly one path; a merged UNK run can in principle be
/// consistent with several, and all are summed. Errors when no segmentation yields `ids`.
pub fn log_weight_of_ids(model: &Model, text: &[u8], ids: &[i64], w: &Weights) -> Result<f64> {
    let n_vocab = model.vocab_size() as i64;
    // Frontier: (position, log-weight) of every consistent partial path; tiny in practice.
    let mut front: Vec<(usize, f64)> = vec![(0, 0.0)];
    let unk = model.unk_edge();
    let lw_unk = unk.map(|u| w.log_w[u as usize]).unwrap_or(0.0);
    let mut k = 0usize;
    while k < ids.len() {
        let mut id = ids[k];
        if id == -1 && unk == Some(n_vocab as u32) {
            id = n_vocab; // the virtual UNK label (reported as -1)
        } else if id < 0 || id >= n_vocab {
            return Err(Error::invalid(format!(
                "id {id} at position {k} is out of range for a vocabulary of {n_vocab} pieces"
            )));
        }
        let id = id as u32;
        let mut next: Vec<(usize, f64)> = Vec::new();
        let kind = model.kind(id).unwrap_or(PieceKind::Unknown);
        if model.byte_fallback() && kind == PieceKind::Byte {
            // A run of byte pieces spells one or more UNK characters.
            let mut bytes = Vec::new();
            while k < ids.len() {
                let i = ids[k];
                if i < 0 || i >= n_vocab || model.kind(i as u32) != Some(PieceKind::Byte) {
                    break;
                }
                match super::model::parse_byte_piece(model.piece(i as u32).unwrap_or(b"")) {
                    Some(b) => bytes.push(b),
                    None => break,
                }
                k += 1;
            }
            for &(pos, lw) in &front {
                if !text[pos..].starts_with(&bytes) {
                    continue;
                }
                let mut p = pos;
                let mut acc = lw;
                let mut ok = true;
                while p < pos + bytes.len() {
                    if !model.unk_edge_at(text, p) {
                        ok = false;
                        break;
                    }
                    acc += lw_unk;
                    p += model.unit_len(text, p);
                }
                if ok && p == pos + bytes.len() {
                    push_state(&mut next, p, acc);
                }
            }
        } else if Some(id) == unk && !model.byte_fallback() {
            // One merged token covers one or more consecutive UNK characters (exactly one
            // when the model does not merge UNKs).
            let merge = model.merges_unk();
            for &(pos, lw) in &front {
                let mut p = pos;
                let mut acc = lw;
                while p < text.len() && model.unk_edge_at(text, p) {
                    acc += lw_unk;
                    p += model.unit_len(text, p);
                    push_state(&mut next, p, acc);
                    if !merge {
                        break;
                    }
                }
            }
            k += 1;
        } else if model.is_matchable(id) {
            let piece = model.piece(id).unwrap_or(b"");
            for &(pos, lw) in &front {
                if text[pos..].starts_with(piece) {
                    push_state(&mut next, pos + piece.len(), lw + w.log_w[id as usize]);
                }
            }
            k += 1;
        } else {
            return Err(Error::invalid(format!(
                "id {id} at position {k} ({:?}) is a {kind:?} piece, which never occurs in a segmentation",
                String::from_utf8_lossy(model.piece(id).unwrap_or(b""))
            )));
        }
        if next.is_empty() {
            return Err(Error::invalid(format!(
                "ids are not a segmentation of the text: no consistent reading after position {k}"
            )));
        }
        front = next;
    }
    front
        .iter()
        .find(|s| s.0 == text.len())
        .map(|s| s.1)
        .ok_or_else(|| Error::invalid("ids do not cover the whole text"))
}

fn push_state(v: &mut Vec<(usize, f64)>, pos: usize, lw: f64) {
    if let Some(s) = v.iter_mut().find(|s| s.0 == pos) {
        s.1 = logaddexp(s.1, lw);
    } else {
        v.push((pos, lw));
    }
}

/// Token healing: the distribution of the last token when the text may end inside it. A
/// candidate is a piece `p` starting at position `s` with `text[s..]` a prefix of `p`; its
/// weight is `Z(s)·exp(α·v(p))`. Returns `(id, start, probability)` sorted by probability,
/// highest first.
pub fn prefix_candidates(
    model: &Model,
    text: &[u8],
    lat: &Lattice,
    w: &Weights,
) -> Result<Vec<(u32, usize, f64)>> {
    let n = lat.n;
    if n == 0 {
        return Ok(Vec::new());
    }
    let z = lat.forward(w);
    let sorted = model.sorted_ids();
    let mut cands: Vec<(u32, usize, f64)> = Vec::new();
    let lo = n.saturating_sub(model.max_edge());
    for s in lo..n {
        if z[s] == f64::NEG_INFINITY {
            continue;
        }
        let rest = &text[s..];
        let piece = |i: u32| model.piece(i).unwrap_or(b"");
        let first = sorted.partition_point(|&i| piece(i) < rest);
        for &id in &sorted[first..] {
            if !piece(id).starts_with(rest) {
                break;
            }
            cands.push((id, s, z[s] + w.log_w[id as usize]));
        }
        if model.unk_edge_at(text, s) && s + model.unit_len(text, s) == n {
            if let Some(u) = model.unk_edge() {
                cands.push((u, s, z[s] + w.log_w[u as usize]));
            }
        }
    }
    let total = cands
        .iter()
        .fold(f64::NEG_INFINITY, |acc, c| logaddexp(acc, c.2));
    for c in &mut cands {
        c.2 = (c.2 - total).exp();
    }
    cands.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.1.cmp(&b.1)).then(a.0.cmp(&b.0)));
    Ok(cands)
}
