//! Vocabulary pruning: remove the pieces whose loss costs the corpus least likelihood.
//!
//! As in SentencePiece, the corpus is segmented with Viterbi, and removing piece `i` is assumed
//! to re-route each of its `f_i` occurrences through the best segmentation of the piece's own
//! text without it (its "alternative"). SentencePiece scores that change approximately
//! (`f_i/N · (log p_i − Σ log p'_alt)`, ignoring that every other piece's probability changes
//! when the token total does); we compute the exact change of the Viterbi unigram
//! log-likelihood `Σ_j f_j log(f_j / N)` under that re-routing, which costs the same
//! O(|alternative|) per piece, and add `H · f_i · (k − 1)` for the `f_i (k − 1)` tokens the
//! re-routing adds (`k` = tokens in the alternative, `H` = current mean code length of a token,
//! `−Σ f log(f/N) / N`). The re-routing estimate is myopic — it ignores that later rounds
//! re-segment the text around the removed piece — and on its own it prunes long pieces too
//! eagerly; pricing the extra tokens at their average cost (a minimum-description-length
//! view: the corpus code grows by about `H` nats per extra token) corrects that. Measured on
//! the shared corpora (`benches/train_compare.py`) this beats both SentencePiece's loss and
//! the bare likelihood change in likelihood *and* compression.

use super::em::{Lattices, PieceTable};
use crate::error::Result;
use crate::parallel;

#[inline]
fn xlogx(x: f64) -> f64 {
    if x > 0.0 {
        x * x.ln()
    } else {
        0.0
    }
}

/// Best segmentation of piece `id`'s own text using alive pieces other than itself, or `None`
/// when it has none.
pub fn alternative(
    table: &PieceTable,
    scores: &[f64],
    alive: &[bool],
    id: u32,
) -> Option<Vec<u32>> {
    let text = table.piece(id);
    let n = text.len();
    let mut best = [f64::NEG_INFINITY; 65];
    let mut back = [(0u32, 0usize); 65];
    if n >= best.len() {
        return None;
    }
    best[0] = 0.0;
    for s in 0..n {
        if best[s] == f64::NEG_INFINITY {
            continue;
        }
        table.prefixes(&text[s..], |len, p| {
            if p != id && alive[p as usize] {
                let x = best[s] + scores[p as usize];
                if x > best[s + len] {
                    best[s + len] = x;
                    back[s + len] = (p, s);
                }
            }
        });
    }
    if best[n] == f64::NEG_INFINITY {
        return None;
    }
    let mut out = Vec::new();
    let mut pos = n;
    while pos > 0 {
        let (p, s) = back[pos];
        out.push(p);
        pos = s;
    }
    out.reverse();
    Some(out)
}

/// Returns the new alive set of about `target` pieces. `required` pieces always stay.
#[allow(clippy::too_many_arguments)]
pub fn prune(
    table: &PieceTable,
    lat: &Lattices,
    scores: &[f64],
    unk_score: f64,
    alive: &[bool],
    required: &[bool],
    target: usize,
    threads: Option<usize>,
) -> Result<Vec<bool>> {
    let n = scores.len();
    let (freq, _) = lat.viterbi_counts(scores, unk_score, threads)?;
    let total: f64 = freq.iter().sum();
    let entropy = -(freq.iter().map(|&f| xlogx(f)).sum::<f64>() - xlogx(total)) / total;
    let cand: Vec<u32> = (0..n as u32)
        .filter(|&i| alive[i as usize] && !required[i as usize] && freq[i as usize] > 0.0)
        .collect();
    // Loss of removing each candidate (higher = more worth keeping); +inf = no alternative.
    let losses: Vec<f64> = parallel::run(threads, cand.len(), |par| {
        parallel::map(par, cand.len(), |c| {
            let i = cand[c];
            let fi = freq[i as usize];
            let Some(mut alt) = alternative(table, scores, alive, i) else {
                return f64::INFINITY;
            };
            alt.sort_unstable();
            let k = alt.len() as f64;
            let new_total = total + fi * (k - 1.0);
            let mut delta = -xlogx(fi) - (xlogx(new_total) - xlogx(total));
            let mut j = 0;
            while j < alt.len() {
                let mut m = 1.0;
                while j + 1 < alt.len() && alt[j + 1] == alt[j] {
                    m += 1.0;
                    j += 1;
                }
                let fa = freq[alt[j] as usize];
                delta += xlogx(fa + m * fi) - xlogx(fa);
                j += 1;
            }
            // Each extra token is priced at the current mean code length (see module doc).
            -delta + entropy * fi * (k - 1.0)
        })
    })?;
    let mut keep = vec![false; n];
    let mut kept = 0usize;
    for i in 0..n {
        if alive[i] && required[i] {
            keep[i] = true;
            kept += 1;
        }
    }
    // Candidates by decreasing loss, then never-used pieces by decreasing score (only needed
    // when the corpus is too small to support the target otherwise).
    let mut order: Vec<(f64, f64, u32)> = cand
        .iter()
        .zip(&losses)
        .map(|(&i, &l)| (l, scores[i as usize], i))
        .collect();
    order.sort_unstable_by(|x, y| {
        y.0.total_cmp(&x.0)
            .then(y.1.total_cmp(&x.1))
            .then(x.2.cmp(&y.2))
    });
    let mut unused: Vec<(f64, u32)> = (0..n as u32)
        .filter(|&i| alive[i as usize] && !required[i as usize] && freq[i as usize] <= 0.0)
        .map(|i| (scores[i as usize], i))
        .collect();
    unused.sort_unstable_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
    for i in order.iter().map(|o| o.2).chain(unused.iter().map(|u| u.1)) {
        if kept >= target {
            break;
        }
        keep[i as usize] = true;
        kept += 1;
    }
    Ok(keep)
}
