//! Sampling segmentations from `p_α(w) ∝ exp(α·score(w))`.
//!
//! - [`perfect`]: the corrected "perfect sampling" rule — weighted reservoir sampling over the
//!   edges entering each position during a single forward pass. O(L) memory (a `u16`
//!   back-pointer per byte plus a ring of `max_edge + 1` partial sums), no stored lattice, and
//!   `log Z_α` for free. The sums live in the linear domain with a running log-scale: weights
//!   `exp(α·v)` come from the per-α cache, and the reservoir test `u < c/Z` is a multiply and a
//!   compare. When some `|α·v|` exceeds 150 the same pass runs in the log domain instead.
//! - [`ffbs`]: forward filtering, backward sampling (SentencePiece's `nbest_size=-1`): forward
//!   log-partitions over a stored lattice, then predecessors drawn from the end.
//! - [`viterbi_sampling`]: the historic, biased single-pass rule, kept for reproduction. A new
//!   candidate replaces the holder with probability `σ(α·(new − held))`; with three equal
//!   candidates the last wins half the time instead of a third.
//!
//! Each uses the caller's [`Stream`]. The perfect sampler takes one word of it as the key of
//! counter-based draws ([`Draws`]: any draw computable from its index alone, which the word
//! sampler in `wordsample` relies on) and, in the linear domain, draws one uniform per edge
//! from a reachable start (see `Linear`); the others draw from the stream, one per contested
//! edge.

use super::graph::{logaddexp, Lattice};
use super::model::{record_end, Block, Chars, Model, Pass, Weights};
use super::viterbi::{backtrack, ring_size, Workspace, IDS_LIMIT};
use crate::error::Result;
use crate::rng::{Draws, Stream};

/// Which sampler `encode(..., alpha=...)` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Perfect,
    Ffbs,
    ViterbiSampling,
}

impl Method {
    pub fn parse(s: &str) -> Result<Method> {
        match s {
            "perfect" => Ok(Method::Perfect),
            "ffbs" => Ok(Method::Ffbs),
            "viterbi-sampling" => Ok(Method::ViterbiSampling),
            _ => Err(crate::Error::invalid(format!(
                "unknown method {s:?}; expected 'perfect', 'ffbs' or 'viterbi-sampling'"
            ))),
        }
    }
}

/// Largest accepted α. Log-probabilities are differences of sums of `α·score` over a text,
/// so their absolute error grows with α: at 1.4·10¹⁸ a sample reported `log p = +16384`, and
/// near 10³⁰⁷ `α·score` overflows. At 10⁶ a 1,000-token text with scores of −10 keeps
/// log-probabilities to ~10⁻⁶, and the distribution is already the Viterbi path unless two
/// segmentations' scores differ by less than ~10⁻⁵ (ties stay ties at any α).
pub const MAX_ALPHA: f64 = 1e6;

/// Validates an inverse temperature: finite, non-negative and at most [`MAX_ALPHA`].
pub fn check_alpha(alpha: f64) -> Result<()> {
    if !alpha.is_finite() || alpha < 0.0 {
        return Err(crate::Error::invalid(format!(
            "alpha must be a finite number >= 0 (got {alpha}); use alpha=None for the Viterbi path"
        )));
    }
    if alpha > MAX_ALPHA {
        return Err(crate::Error::invalid(format!(
            "alpha must be at most {MAX_ALPHA:e} (got {alpha:e}): beyond that, log-probabilities \
             lose their precision in double arithmetic; use alpha=None for the Viterbi path"
        )));
    }
    Ok(())
}

/// Draws one segmentation into `ws.path` with any method; returns `log Z_α` where the method
/// computes it (NaN for `viterbi-sampling`).
pub fn sample(
    model: &Model,
    text: &[u8],
    w: &Weights,
    method: Method,
    rng: &mut Stream,
    ws: &mut Workspace,
) -> Result<f64> {
    match method {
        Method::Perfect => perfect(model, text, w, rng, ws),
        Method::Ffbs => {
            let lat = Lattice::build(model, text)?;
            ffbs(model, text, &lat, w, rng, &mut ws.path)
        }
        Method::ViterbiSampling => {
            viterbi_sampling(model, text, w.alpha, rng, ws)?;
            Ok(f64::NAN)
        }
    }
}

/// Perfect sampling (weighted reservoir over incoming edges). Fills `ws.path`, returns
/// `log Z_α(text)`.
pub fn perfect(
    model: &Model,
    text: &[u8],
    w: &Weights,
    rng: &mut Stream,
    ws: &mut Workspace,
) -> Result<f64> {
    let ch = model.chars()?;
    // Like Viterbi, record each position's chosen edge id on texts up to `IDS_LIMIT` so
    // emitting needs no second trie lookup per token.
    let ids = text.len() <= IDS_LIMIT;
    // One word of the stream keys the text's draws (see `Draws`).
    let d = &mut Draws::new(rng);
    let log_z = match (w.linear_ok, ids) {
        (true, true) => perfect_linear::<true>(model, ch, text, w, d, ws),
        (true, false) => perfect_linear::<false>(model, ch, text, w, d, ws),
        (false, true) => perfect_log::<true>(model, ch, text, w, d, ws),
        (false, false) => perfect_log::<false>(model, ch, text, w, d, ws),
    };
    ws.ids_valid = ids;
    backtrack(model, text, ws)?;
    Ok(log_z)
}

/// Clears `ws.back` (and sizes `ids`) and the winner rings for a pass over `n` bytes.
fn prepare(ws: &mut Workspace, n: usize, size: usize, ids: bool) {
    ws.back.clear();
    ws.ids_valid = false;
    ws.back.resize(n + 1, 0);
    if ids {
        ws.size_ids(n);
    }
    ws.winners.reset(size);
}

fn perfect_linear<const IDS: bool>(
    model: &Model,
    ch: &Chars,
    text: &[u8],
    w: &Weights,
    rng: &mut Draws,
    ws: &mut Workspace,
) -> f64 {
    let size = ch.ring;
    prepare(ws, text.len(), size, IDS);
    ws.ring64.clear();
    // The running sums Z(e).
    ws.ring64.resize(size, 0.0);
    let ring = &mut ws.ring64[..];
    ring[0] = 1.0;
    let mut pass = Linear::<IDS> {
        ch,
        back: &mut ws.back[..],
        ids: &mut ws.ids[..],
        ring,
        node: &mut ws.winners.node[..],
        weights: &w.w[..],
        rng,
        mask: size - 1,
        scale: 0.0,
    };
    let end = model.run_pass(ch, text, &mut ws.scan, &mut pass);
    if text.is_empty() {
        return 0.0;
    }
    pass.scale + pass.ring[end & pass.mask].ln()
}

/// The linear-domain perfect sampler's relaxation, in units.
///
/// Reservoir rule: every edge from a reachable start draws one uniform `u` (in list order,
/// whatever the outcome) and replaces the holder of its end when `u·Z <= c` (`Z` the
/// running sum including its own contribution `c`), i.e. with probability `c/Z`. The first
/// edge into an end has `Z = c` exactly and is always taken (`u < 1`, so `u·c <= c` after
/// rounding too). The draws do not depend on the outcomes, so the stream, the sums and the
/// choices are three independent chains: the replacement is a select, not a branch.
///
/// Performance notes: the previous rule drew one uniform per *replacement* ("jumps": the
/// holder chosen at running total W is replaced by the first later edge whose total
/// reaches W/u). Fewer draws, but the replacement was a data-dependent branch (a coin flip
/// at α = 0.1, mispredicted about every other edge), and made branch-free the stream then
/// depended on each outcome, a serial chain through a division per edge: both slower than
/// a draw per edge: perfect ÷ Viterbi batch time went 1.50 -> 1.12 on botchan and 1.62 ->
/// 1.13 on zh_fortunes (with the block override below; see the notes in `batch.rs`). The
/// acceptance test's rounding (`u` on a 2^-53 grid, one product) moves each replacement
/// probability by at most ~2^-53, far below anything a test or a user can see.
struct Linear<'a, const IDS: bool> {
    ch: &'a Chars,
    back: &'a mut [u16],
    ids: &'a mut [u32],
    ring: &'a mut [f64],
    node: &'a mut [u32],
    weights: &'a [f64],
    rng: &'a mut Draws,
    mask: usize,
    /// log of the common scale of every value in the rings.
    scale: f64,
}

/// Keeps the pending sums in a comfortable range: every contribution is at least
/// 1e-100·e^-150, far above the subnormals, and at most 1e100·e^150 per edge. Checked at
/// every edge, this rescales at a start's first edge, after which its value is exactly 1.
/// Returns the start's (possibly rescaled) sum.
#[inline(always)]
fn rescale(ring: &mut [f64], here: usize, zs: f64, scale: &mut f64) -> f64 {
    if (1e-100..=1e100).contains(&zs) {
        return zs;
    }
    let f = 1.0 / zs;
    for r in ring.iter_mut() {
        *r *= f;
    }
    *scale += zs.ln();
    ring[here] = 1.0;
    1.0
}

/// Renormalises a word cut's final sum to exactly 1 (see [`Chars::cut_sym`]): every other
/// pending sum is 0 there (no edge crosses a cut), so this only moves `log Z` into `scale`,
/// and each word's pass then computes exactly what it computes on its own from 1 — which
/// is what lets `super::wordsample` draw word by word, cached, with the same bits.
#[inline(always)]
fn renormalise_cut(ring: &mut [f64], here: usize, zs: f64, scale: &mut f64) -> f64 {
    if zs != 1.0 {
        *scale += zs.ln();
        ring[here] = 1.0;
    }
    1.0
}

/// One reservoir step of [`Linear`]: adds `c` to the end's sum, draws, and keeps `nd` as the
/// end's holder when `u·Z <= c`.
///
/// # Safety
/// `slot < ring.len()` and `slot < node.len()`.
#[inline(always)]
unsafe fn reservoir(
    ring: &mut [f64],
    node: &mut [u32],
    rng: &mut Draws,
    slot: usize,
    c: f64,
    nd: u32,
) {
    let u = rng.next_f64();
    // SAFETY: contract.
    unsafe {
        let r = ring.get_unchecked_mut(slot);
        let z = *r + c;
        *r = z;
        let n = node.get_unchecked_mut(slot);
        *n = std::hint::select_unpredictable(u * z <= c, nd, *n);
    }
}

impl<const IDS: bool> Pass for Linear<'_, IDS> {
    #[inline(always)]
    fn edge(&mut self, su: usize, eu: usize, nd: u32) {
        let here = su & self.mask;
        let zs = self.ring[here];
        if zs == 0.0 {
            // Unreachable start (Z > 0 everywhere else): no draw.
            return;
        }
        let zs = rescale(self.ring, here, zs, &mut self.scale);
        let c = zs * self.weights[self.ch.values[nd as usize] as usize];
        let slot = eu & self.mask;
        assert!(slot < self.ring.len() && slot < self.node.len());
        // SAFETY: asserted.
        unsafe { reservoir(self.ring, self.node, self.rng, slot, c, nd) };
    }

    #[inline(always)]
    fn done(&mut self, su: usize) {
        let slot = su & self.mask;
        self.ring[slot] = 0.0;
    }

    #[inline(always)]
    fn cut(&mut self, su: usize) {
        let here = su & self.mask;
        let zs = self.ring[here];
        if zs != 0.0 {
            renormalise_cut(self.ring, here, zs, &mut self.scale);
        }
    }

    #[inline(always)]
    fn end(&mut self, u: usize, pos: &[usize]) {
        let ids = if IDS { Some(&mut *self.ids) } else { None };
        record_end(self.ch, u, pos, u & self.mask, self.node, self.back, ids);
    }

    /// [`Self::edge`] over a block with the fields (and the stream's state) in locals (see
    /// `Pass::block`): the generic loop reloaded them through `&mut self` after every store.
    #[inline(always)]
    fn block(&mut self, b: &Block<'_>) {
        let mask = self.mask;
        {
            let (ring, node) = (&mut *self.ring, &mut *self.node);
            let (weights, values) = (self.weights, &self.ch.values[..]);
            let mut rng = *self.rng;
            let mut scale = self.scale;
            assert!(ring.len() == mask + 1 && node.len() == mask + 1);
            let cuts = b.cuts;
            for &x in b.list {
                let (su, eu, nd) = b.edge(x);
                let here = su & mask;
                let mut zs = ring[here];
                if zs == 0.0 {
                    continue;
                }
                if (cuts >> (x & 15)) & 1 != 0 {
                    zs = renormalise_cut(ring, here, zs, &mut scale);
                }
                let zs = rescale(ring, here, zs, &mut scale);
                let c = zs * weights[values[nd as usize] as usize];
                // SAFETY: masked slots are below `mask + 1`, both rings' length (asserted).
                unsafe { reservoir(ring, node, &mut rng, eu & mask, c, nd) };
            }
            *self.rng = rng;
            self.scale = scale;
        }
        for u in b.j0..b.j0 + b.lanes {
            self.done(u);
        }
        for u in b.j0 + 1..=b.j0 + b.lanes {
            self.end(u, b.pos);
        }
    }
}

fn perfect_log<const IDS: bool>(
    model: &Model,
    ch: &Chars,
    text: &[u8],
    w: &Weights,
    rng: &mut Draws,
    ws: &mut Workspace,
) -> f64 {
    let size = ch.ring;
    prepare(ws, text.len(), size, IDS);
    ws.ring64.clear();
    ws.ring64.resize(size, f64::NEG_INFINITY);
    ws.ring64[0] = 0.0;
    let mut pass = Log::<IDS> {
        ch,
        back: &mut ws.back[..],
        ids: &mut ws.ids[..],
        ring: &mut ws.ring64[..],
        node: &mut ws.winners.node[..],
        log_w: &w.log_w[..],
        rng,
        mask: size - 1,
    };
    let end = model.run_pass(ch, text, &mut ws.scan, &mut pass);
    if text.is_empty() {
        0.0
    } else {
        pass.ring[end & pass.mask]
    }
}

/// The log-domain perfect sampler's relaxation, in units.
struct Log<'a, const IDS: bool> {
    ch: &'a Chars,
    back: &'a mut [u16],
    ids: &'a mut [u32],
    ring: &'a mut [f64],
    node: &'a mut [u32],
    log_w: &'a [f64],
    rng: &'a mut Draws,
    mask: usize,
}

impl<const IDS: bool> Pass for Log<'_, IDS> {
    #[inline(always)]
    fn edge(&mut self, su: usize, eu: usize, nd: u32) {
        let zs = self.ring[su & self.mask];
        if zs == f64::NEG_INFINITY {
            // Unreachable start.
            return;
        }
        let c = zs + self.log_w[self.ch.values[nd as usize] as usize];
        let slot = eu & self.mask;
        let z = logaddexp(self.ring[slot], c);
        self.ring[slot] = z;
        // The first edge is taken without a draw (short-circuit; a free slot holds the
        // root, node 0, which no piece ends at).
        if self.node[slot] == 0 || self.rng.next_f64() < (c - z).exp() {
            self.node[slot] = nd;
        }
    }

    #[inline(always)]
    fn done(&mut self, su: usize) {
        self.ring[su & self.mask] = f64::NEG_INFINITY;
    }

    #[inline(always)]
    fn end(&mut self, u: usize, pos: &[usize]) {
        let ids = if IDS { Some(&mut *self.ids) } else { None };
        record_end(self.ch, u, pos, u & self.mask, self.node, self.back, ids);
    }
}

/// The historic "Viterbi sampling" rule (biased; see the module docs). Fills `ws.path`.
pub fn viterbi_sampling(
    model: &Model,
    text: &[u8],
    alpha: f64,
    rng: &mut Stream,
    ws: &mut Workspace,
) -> Result<()> {
    let n = text.len();
    let size = ring_size(model);
    let mask = size - 1;
    ws.back.clear();
    ws.ids_valid = false;
    ws.back.resize(n + 1, 0);
    ws.ring64.clear();
    ws.ring64.resize(size, 0.0);
    let back = &mut ws.back[..];
    let ring = &mut ws.ring64[..];
    for s in 0..n {
        if s != 0 && back[s] == 0 {
            continue;
        }
        let here = ring[s & mask];
        model.edges_at(text, s, |e, id| {
            let cand = here + model.score(id);
            let slot = e & mask;
            if back[e] == 0 {
                ring[slot] = cand;
                back[e] = (e - s) as u16;
            } else {
                let p = 1.0 / (1.0 + (-alpha * (cand - ring[slot])).exp());
                if rng.next_f64() < p {
                    ring[slot] = cand;
                    back[e] = (e - s) as u16;
                }
            }
        });
    }
    backtrack(model, text, ws)
}

/// Forward filtering, backward sampling over a built lattice. Fills `path`, returns `log Z`.
pub fn ffbs(
    model: &Model,
    text: &[u8],
    lat: &Lattice,
    w: &Weights,
    rng: &mut Stream,
    path: &mut Vec<(usize, usize, u32)>,
) -> Result<f64> {
    let log_z = lat.forward(w);
    lat.check_reachable(model, text, &log_z)?;
    path.clear();
    let mut e = lat.n;
    while e > 0 {
        // Draw the predecessor edge with probability Z(s)·exp(α v)/Z(e).
        let u = rng.next_f64();
        let mut acc = 0.0;
        let mut chosen = None;
        let into = lat.into_idx(e);
        for &k in into {
            let ed = lat.edges[k as usize];
            let p = (log_z[ed.s as usize] + w.log_w[ed.id as usize] - log_z[e]).exp();
            if p > 0.0 {
                chosen = Some(ed);
            }
            acc += p;
            if u < acc {
                break;
            }
        }
        // Rounding can leave `acc` a hair below 1: the last edge with mass takes the rest.
        let ed = chosen.ok_or_else(|| {
            crate::Error::Internal(format!("no predecessor with mass at position {e}"))
        })?;
        path.push((ed.s as usize, ed.e as usize, ed.id));
        e = ed.s as usize;
    }
    path.reverse();
    Ok(if lat.n == 0 { 0.0 } else { log_z[lat.n] })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lattice::model::tests::{arb_model, arb_text, both_walks};
    use crate::lattice::viterbi::ring_size;
    use proptest::prelude::*;

    // The byte-wise perfect samplers the character-wise pass replaced, kept as the
    // reference: same draws, same choices, same log Z.
    fn reference_linear<const IDS: bool>(
        model: &Model,
        text: &[u8],
        w: &Weights,
        rng: &mut Stream,
        ws: &mut Workspace,
    ) -> f64 {
        let rng = &mut Draws::new(rng);
        let n = text.len();
        let size = ring_size(model);
        let mask = size - 1;
        ws.back.clear();
        ws.ids_valid = false;
        ws.back.resize(n + 1, 0);
        ws.ring64.clear();
        ws.ring64.resize(size, 0.0);
        if IDS {
            ws.size_ids(n);
        }
        let ids = &mut ws.ids[..];
        let back = &mut ws.back[..];
        let ring = &mut ws.ring64[..];
        let weights = &w.w[..];
        let cuts = model.chars().unwrap().cut_sym.is_some();
        ring[0] = 1.0;
        // log of the common scale of every value in the rings.
        let mut scale = 0.0f64;
        for s in 0..n {
            if s != 0 && back[s] == 0 {
                continue;
            }
            let slot = s & mask;
            let mut zs = ring[slot];
            ring[slot] = 0.0;
            // Renormalise at a word cut (a unit "▁" when the model cuts words).
            if cuts && zs != 1.0 && text[s..].starts_with("▁".as_bytes()) {
                scale += zs.ln();
                zs = 1.0;
            }
            // Keep the pending sums in a comfortable range: every contribution is at least
            // 1e-100·e^-150, far above the subnormals, and at most 1e100·e^150 per edge.
            if !(1e-100..=1e100).contains(&zs) {
                let f = 1.0 / zs;
                for r in ring.iter_mut() {
                    *r *= f;
                }
                scale += zs.ln();
                zs = 1.0;
            }
            model.edges_at(text, s, |e, id| {
                let c = zs * weights[id as usize];
                let slot = e & mask;
                let z = ring[slot] + c;
                ring[slot] = z;
                // Weighted reservoir of size one: one uniform per edge, replace with
                // probability c/z (the first edge has z == c and is always taken).
                let u = rng.next_f64();
                if back[e] == 0 || u * z <= c {
                    back[e] = (e - s) as u16;
                    if IDS {
                        ids[e] = id;
                    }
                }
            });
        }
        if n == 0 {
            return 0.0;
        }
        scale + ring[n & mask].ln()
    }

    fn reference_log<const IDS: bool>(
        model: &Model,
        text: &[u8],
        w: &Weights,
        rng: &mut Stream,
        ws: &mut Workspace,
    ) -> f64 {
        let rng = &mut Draws::new(rng);
        let n = text.len();
        let size = ring_size(model);
        let mask = size - 1;
        ws.back.clear();
        ws.ids_valid = false;
        ws.back.resize(n + 1, 0);
        ws.ring64.clear();
        ws.ring64.resize(size, f64::NEG_INFINITY);
        if IDS {
            ws.size_ids(n);
        }
        let ids = &mut ws.ids[..];
        let back = &mut ws.back[..];
        let ring = &mut ws.ring64[..];
        ring[0] = 0.0;
        for s in 0..n {
            if s != 0 && back[s] == 0 {
                continue;
            }
            let slot = s & mask;
            let zs = ring[slot];
            ring[slot] = f64::NEG_INFINITY;
            model.edges_at(text, s, |e, id| {
                let c = zs + w.log_w[id as usize];
                let slot = e & mask;
                let z = logaddexp(ring[slot], c);
                ring[slot] = z;
                // The first edge is taken without a draw (short-circuit).
                if back[e] == 0 || rng.next_f64() < (c - z).exp() {
                    back[e] = (e - s) as u16;
                    if IDS {
                        ids[e] = id;
                    }
                }
            });
        }
        if n == 0 {
            0.0
        } else {
            ring[n & mask]
        }
    }

    fn reference(m: &Model, text: &[u8], w: &Weights, seed: u64) -> (Vec<(usize, u16, u32)>, u64) {
        let mut ws = Workspace::new();
        let mut rng = Stream::new(seed, 7);
        let z = if w.linear_ok {
            reference_linear::<true>(m, text, w, &mut rng, &mut ws)
        } else {
            reference_log::<true>(m, text, w, &mut rng, &mut ws)
        };
        let reached = (1..=text.len())
            .filter(|&e| ws.back[e] != 0)
            .map(|e| (e, ws.back[e], ws.ids[e]))
            .collect();
        (reached, z.to_bits())
    }

    fn check(m: &Model, text: &[u8], alpha: f64, seed: u64) {
        let w = m.weights(alpha);
        let want = reference(m, text, &w, seed);
        for got in both_walks(|| {
            let mut ws = Workspace::new();
            let mut rng = Stream::new(seed, 7);
            let z = perfect(m, text, &w, &mut rng, &mut ws);
            let reached: Vec<(usize, u16, u32)> = (1..=text.len())
                .filter(|&e| ws.back[e] != 0)
                .map(|e| (e, ws.back[e], ws.ids[e]))
                .collect();
            (reached, z.map(f64::to_bits).ok())
        }) {
            assert_eq!(got.0, want.0);
            if let Some(z) = got.1 {
                assert_eq!(z, want.1);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn perfect_matches_the_bytewise_reference(
            m in arb_model(4), text in arb_text(40), seed in any::<u64>(), big in any::<bool>()
        ) {
            // alpha = 20 pushes some |alpha v| past 150: the log-domain sampler.
            check(&m, &text, if big { 20.0 } else { 0.3 }, seed);
        }
    }

    #[test]
    fn perfect_matches_on_long_texts() {
        let m = crate::lattice::model::tests::spm_like(&[
            ("▁", -1.0),
            ("a", -2.0),
            ("b", -2.5),
            ("中", -3.0),
            ("ab", -2.2),
            ("b中a", -2.0),
        ]);
        let text = "ab中a▁a中b".repeat(1500);
        for alpha in [0.1, 1.0, 40.0] {
            check(&m, text.as_bytes(), alpha, 3);
        }
    }
}
