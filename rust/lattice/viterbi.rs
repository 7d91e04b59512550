//! Viterbi decoding, exactly as SentencePiece's optimised unigram encoder computes it.
//!
//! No lattice is stored: one forward pass over start positions relaxes every edge as the trie
//! walk reports it. Scores live in a ring buffer of `max_edge + 1` slots (every edge ends within
//! that distance of where it starts), and the only per-position array is a `u16` back-pointer
//! holding the winning edge's length, so memory is 2 bytes per input byte.
//!
//! Parity details that matter for identical ids:
//! - f32 accumulation (`score + best_so_far` in float), like SentencePiece;
//! - user-defined pieces' bonus `len·max_score − 0.1` is a double in SentencePiece, so that sum
//!   and its comparison run in f64 before the f32 store;
//! - ties keep the first candidate met (strict `>`), in start-position then length order.

use super::model::Model;
use crate::error::Result;

/// Reusable per-thread scratch space for the single-pass algorithms.
#[derive(Default, Debug)]
pub struct Workspace {
    pub(crate) back: Vec<u16>,
    pub(crate) ring32: Vec<f32>,
    pub(crate) ring64: Vec<f64>,
    /// The decoded path as `(start, end, id)` edges in text order.
    pub path: Vec<(usize, usize, u32)>,
}

impl Workspace {
    pub fn new() -> Self {
        Self::default()
    }
}

pub(crate) fn ring_size(model: &Model) -> usize {
    (model.max_edge() + 1).next_power_of_two()
}

/// Fills `ws.path` with the Viterbi segmentation of the prepared text.
pub fn viterbi(model: &Model, text: &[u8], ws: &mut Workspace) -> Result<()> {
    if model.has_user_defined() {
        forward::<true>(model, text, ws);
    } else {
        forward::<false>(model, text, ws);
    }
    backtrack(model, text, ws)
}

fn forward<const USER: bool>(model: &Model, text: &[u8], ws: &mut Workspace) {
    let n = text.len();
    let size = ring_size(model);
    let mask = size - 1;
    ws.back.clear();
    ws.back.resize(n + 1, 0);
    ws.ring32.clear();
    ws.ring32.resize(size, 0.0);
    let back = &mut ws.back[..];
    let ring = &mut ws.ring32[..];
    for s in 0..n {
        if s != 0 && back[s] == 0 {
            continue;
        }
        let here = ring[s & mask];
        model.edges_at(text, s, |e, id| {
            let slot = e & mask;
            let len = (e - s) as u16;
            if USER && model.is_user_defined(id) {
                let cand = model.score(id) + here as f64;
                if back[e] == 0 || cand > ring[slot] as f64 {
                    ring[slot] = cand as f32;
                    back[e] = len;
                }
            } else {
                let cand = model.score32(id) + here;
                if back[e] == 0 || cand > ring[slot] {
                    ring[slot] = cand;
                    back[e] = len;
                }
            }
        });
    }
}

/// Follows the `u16` back-pointers from the end and recovers each edge's piece id.
pub(crate) fn backtrack(model: &Model, text: &[u8], ws: &mut Workspace) -> Result<()> {
    let n = text.len();
    ws.path.clear();
    if n == 0 {
        return Ok(());
    }
    if ws.back[n] == 0 {
        let furthest = (0..n)
            .rev()
            .find(|&i| i == 0 || ws.back[i] != 0)
            .unwrap_or(0);
        return Err(model.unsegmentable(text, furthest));
    }
    let mut e = n;
    while e > 0 {
        let s = e - ws.back[e] as usize;
        let id = model.edge_id(text, s, e).ok_or_else(|| {
            crate::Error::Internal(format!("no edge for span {s}..{e} during backtracking"))
        })?;
        ws.path.push((s, e, id));
        e = s;
    }
    ws.path.reverse();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lattice::model::tests::spm_like;

    fn pieces(m: &Model, t: &str) -> Vec<String> {
        let text = m.prepare(t.as_bytes()).unwrap();
        let mut ws = Workspace::new();
        viterbi(m, &text, &mut ws).unwrap();
        m.emit_pieces(&text, &ws.path)
            .into_iter()
            .map(|p| String::from_utf8(p).unwrap())
            .collect()
    }

    #[test]
    fn best_path_and_unk_merge() {
        let m = spm_like(&[
            ("▁", -1.0),
            ("a", -2.0),
            ("b", -2.0),
            ("ab", -3.0),
            ("▁a", -2.5),
        ]);
        assert_eq!(pieces(&m, "ab"), vec!["▁", "ab"]);
        // 'x' and 'y' are unknown: one merged UNK token.
        assert_eq!(pieces(&m, "axyb"), vec!["▁a", "xy", "b"]);
        let text = m.prepare(b"axyb").unwrap();
        let mut ws = Workspace::new();
        viterbi(&m, &text, &mut ws).unwrap();
        let mut ids = vec![];
        m.emit_ids(&text, &ws.path, &mut ids);
        assert_eq!(ids, vec![5, 0, 3]);
        assert!(pieces(&m, "").is_empty());
    }

    #[test]
    fn ties_keep_first_candidate() {
        // "▁"+"ab" and "▁"+"a"+"b" both score -3; start 3 relaxes "ab" into the end before
        // start 4 offers "b" with the same total, so "ab" is kept.
        let m = spm_like(&[
            ("▁", -1.0),
            ("a", -1.0),
            ("b", -1.0),
            ("ab", -2.0),
            ("▁ab", -3.5),
        ]);
        assert_eq!(pieces(&m, "ab"), vec!["▁", "ab"]);
    }
}
