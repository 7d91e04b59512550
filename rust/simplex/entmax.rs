//! α-entmax: `p = max((α−1)·x − τ, 0)^{1/(α−1)}`, `Σp = 1` (α = 1: softmax, α = 2: sparsemax).
//!
//! Write `a = α − 1`, `β = 1/a` and `z_i = a·(x_i − max) ≤ 0`; relative to the maximum the
//! threshold lies in `[−1, 0)`, so only entries with `z > −1` can be in the support. The max
//! pass also yields a tighter lower bound `lo` of the threshold (power-mean bound over the
//! SIMD lane maxima, [`sparsekern::max_nan_bound`]), and only the candidates `z > lo` are
//! collected ([`sparsekern::candidates`]). The threshold solves
//! `G(τ) = ‖(z − τ)₊‖_β − 1 = 0` ([`solve_threshold`]) by Newton's method from a lower bound.
//! For β ≥ 1, `G` is a norm of a vector that is convex and decreasing in τ, hence convex and
//! decreasing itself, so Newton from the left climbs monotonically to the root without
//! overshooting, and it is exact in one step wherever `G` is linear (a single support entry, or
//! ties). Working with the norm rather than `Σ d^β − 1` (whose curvature grows with β) keeps
//! the iteration count at 3–6 for every α. A bracket guards every step (bisection when a step
//! leaves it, as it can for β < 1 where `G` is only piecewise concave).
//!
//! * α = 2 and α = 1.5 (β = 1, 2) finish exactly: once the support stops changing, `τ` is
//!   recomputed in closed form on it (the mean for sparsemax; `τ = μ − sqrt(1/k − σ²)` for
//!   1.5) and checked, with the sort-based rules as the fallback.
//! * Integer β (α = 1.25, 1 + 1/n) raise by repeated multiplication; any other β uses a
//!   vectorised double-precision `exp((β−1)·ln d)·d` ([`sparsekern`]), warm-started from the
//!   threshold of the nearest integer power. The final `p` is renormalised.
//! * Very close to α = 1 (β above [`tau_space_max`]) `d = z − τ` is `1 − O(α−1)` and loses
//!   the relative precision of `x − max` to cancellation, and for large α with ties the
//!   threshold underflows; there the log-space search ([`entmax_logspace_row`]) keeps every
//!   quantity well scaled.
//!
//! α = 1 and α = 2 dispatch to softmax and sparsemax, so those are exact.
//!
//! Performance notes (4096×1024 float32 standard normal, one thread; 2-vCPU Sapphire Rapids VM
//! shared with other jobs, so every figure is a ratio measured side by side in one process,
//! best of N, alternating old/new):
//! * Before: the general path searched over `s = ln(largest p)` with scalar `ln1p` + `exp` per
//!   candidate per iteration (8–10 iterations). For α = 1.25 nearly every entry is a candidate
//!   (`x > max − 4`), so that was ~90% of the time (3.0× the `entmax` package). Sparsemax and
//!   entmax-1.5 took five passes over the row (max, NaN check, candidates in chunks of 8 with
//!   a scalar push, an f64 `relu` over the whole row) plus a sort / a Newton on `Σd² = 1`.
//! * Newton on the norm `G` with vectorised moments (AVX-512, [`sparsekern::moments`]),
//!   integer powers by multiplication: α = 1.25 8×, α = 1.1 16×, generic α = 1.5000001 1.9×
//!   faster than before.
//! * Branch-free candidate pass (block list, then register compress), `count_ones` compiled
//!   with POPCNT (it had been a multiply-and-shift emulation), vectorised pruning and support
//!   sums (a branchy `retain` and a serial sum had taken ~40% of the α = 1.25 solve), skipping
//!   the confirming evaluation once a Newton step is below 1e-11 (quadratic convergence), the
//!   integer warm start for general β, zero-filled output with only candidate blocks computed,
//!   next-row prefetch in the max pass (input) and the fill (output). Dropping either prefetch
//!   cost ~15–25% (sparsemax 3.6 → 5.2 ms, entmax-1.5 6.8 → 8.4–9.1 ms).
//! * The lane-maxima bound cut the candidates 3×–4× (α = 1.5: 95 → 22 per row; α = 1.25:
//!   740 → 310) and starts Newton close to the root: entmax-1.5 3.6× → 5.7–6.2× the previous
//!   implementation, α = 1.25 18× → 33–43×, generic α 3× → 5–7×, sparsemax 1.8×.
//! * Tried and dropped: non-temporal stores of the output through an L1 staging row (slower,
//!   3.6 → 4.2 ms for sparsemax: the 260 MiB L3 holds both arrays, and streaming stores force
//!   them out to DRAM); `prefetchw` instead of a read prefetch for the output (no difference).
//! * Final figures against the `entmax` package (LTO wheel, `benches/compare.py --engine
//!   softmax --filter max`): see the commit message.

use ndarray::{ArrayViewD, ArrayViewMutD};

use super::layout::{map_rows, map_rows2, Params, PerRow, RowSpec, Work};
use super::sparsekern::{self, Isa, Power};
use super::sparsemax::{
    sparsemax_row_in, sparsemax_vjp_row, special_or_max, special_or_max_bound, threshold_sorted,
};
use super::{kern, softmax, Float};
use crate::error::{Error, Result};

/// Exact entmax-1.5 threshold (relative to the maximum, on `z = (x − max)/2`).
pub(crate) fn threshold15_sorted(z: &[f64]) -> f64 {
    let (mut s, mut q) = (0.0f64, 0.0f64);
    let mut tau = z[0] - 1.0;
    for (k, &zk) in z.iter().enumerate() {
        let kf = (k + 1) as f64;
        s += zk;
        q += zk * zk;
        let mu = s / kf;
        let var = (q / kf - mu * mu).max(0.0);
        let d = 1.0 / kf - var;
        if d < 0.0 {
            break;
        }
        let t = mu - d.sqrt();
        if t <= zk {
            tau = t;
        } else {
            break;
        }
    }
    tau
}

/// Entmax-1.5 threshold from unsorted candidates `z ∈ (−1, 0]` (see [`solve_threshold`]).
#[cfg(test)]
pub(crate) fn threshold15_newton(z: &mut Vec<f64>) -> f64 {
    solve_threshold(z, Power::Int(2), Isa::now(), -1.0).0
}

/// Iteration cap of [`solve_threshold`]; bisection alone would reach f64 resolution on
/// `[−1, 0]` in about 60 steps.
const MAX_ITER: usize = 200;

/// Threshold `τ` (relative to the maximum) of the candidates `z ∈ (floor, 0]` (0 among them),
/// `floor ≥ −1` a lower bound of it: `Σ (z − τ)₊^β = 1`. Returns `τ` and `S = Σ (z − τ)₊^β`
/// at it, by which the caller divides (1 for the exact closed forms of β = 1, 2; NaN if the
/// search failed). May drop entries of `z` that cannot be in the support.
pub(crate) fn solve_threshold(z: &mut Vec<f64>, pw: Power, isa: Isa, floor: f64) -> (f64, f64) {
    let n = z.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let beta = pw.beta();
    let kf = n as f64;
    let mu = kern::sum(z) / kf;
    // Lower bounds of the root. For β ≥ 1 and τ ≤ μ, by the power-mean inequality
    // ‖(z − τ)₊‖_β ≥ K^{1/β − 1}·Σ (z − τ)₊ ≥ K^{1/β}·(μ − τ), which is ≥ 1 at
    // τ = μ − K^{−1/β}. For β < 1 the β-"norm" is at least the 1-norm, ≥ K·(μ − τ). And
    // G(−1) ≥ 0 always (the maximum alone has d = 1).
    let start = if beta >= 1.0 {
        mu - kf.powf(-1.0 / beta)
    } else {
        mu - 1.0 / kf
    };
    let mut tau = start.max(floor).max(-1.0);
    if let Power::Real(b) = pw {
        // Warm start: the threshold for the nearest integer power costs a few
        // multiplications per entry and iteration, and lies close to this one (for
        // α = 1.5000001 within 1e-6), so the general power then takes 2–3 steps instead of
        // 7–8.
        let r = b.round();
        if (1.0..=MAX_INT_WARM).contains(&r) {
            let w = Power::Int(r as u32);
            tau = newton(z, w, tau, false, 1e-9, isa).0;
            if r <= 2.0 {
                tau = finish_closed(z, tau, w, isa);
            }
        }
    }
    let (tau, s) = newton(z, pw, tau, true, 4.0 * f64::EPSILON, isa);
    if matches!(pw, Power::Int(1) | Power::Int(2)) {
        return (finish_closed(z, tau, pw, isa), 1.0);
    }
    (tau, s)
}

/// The exact threshold for β = 1 or 2 from a `τ` whose support is the final one (or the
/// sort-based rule when it is not). May reorder `z`.
fn finish_closed(z: &mut [f64], tau: f64, pw: Power, isa: Isa) -> f64 {
    if let Some(t) = closed_form(z, tau, pw, isa) {
        return t;
    }
    z.sort_unstable_by(|a, b| b.total_cmp(a));
    if pw == Power::Int(1) {
        threshold_sorted(z)
    } else {
        threshold15_sorted(z)
    }
}

/// Largest integer power used for the warm start of a general one.
const MAX_INT_WARM: f64 = 16.0;

/// Safeguarded Newton on `G(τ) = ‖(z − τ)₊‖_β − 1` from `tau` within `[−1, 0]`, until a step
/// is at most `rtol·|τ|` (for β = 1, 2: until the support stops changing, the closed form
/// finishing the job). Returns the last `τ` evaluated and `Σ (z − τ)₊^β` there. With `prune`,
/// drops entries at or below points where `G > 0` (then below the root: out of the support
/// for good).
fn newton(
    z: &mut Vec<f64>,
    pw: Power,
    mut tau: f64,
    prune: bool,
    rtol: f64,
    isa: Isa,
) -> (f64, f64) {
    let beta = pw.beta();
    let closed = matches!(pw, Power::Int(1) | Power::Int(2));
    let (mut lo, mut hi) = (-1.0f64, 0.0f64);
    let mut last_cnt = usize::MAX;
    let mut s_tau = f64::NAN;
    let mut converged = false;
    for _ in 0..MAX_ITER {
        let (s, sq, cnt) = sparsekern::moments(isa, z, tau, pw);
        s_tau = s;
        if closed && cnt == last_cnt {
            converged = true;
            break;
        }
        last_cnt = cnt;
        if cnt == 0 || s.is_nan() || s <= 0.0 {
            hi = tau;
            tau = 0.5 * (lo + hi);
            continue;
        }
        let nrm = sparsekern::root(s, pw);
        let g = nrm - 1.0;
        if g > 0.0 {
            lo = tau;
            // Drop the entries below once they are a good share (with a margin against
            // rounding in G, which only ever keeps entries).
            if prune && g > 1e-9 && cnt * 4 < z.len() * 3 {
                sparsekern::prune(isa, z, tau);
            }
        } else if g < 0.0 {
            hi = tau;
        } else {
            converged = true;
            break;
        }
        // G' = −‖d‖^{1−β}·Σ d^{β−1}, so the step is G·‖d‖^{β−1}/Σ d^{β−1} = G·(S/‖d‖)/Σ d^{β−1}.
        let step = g * (s / nrm) / sq;
        if step.abs() <= rtol * tau.abs() {
            // Converged to rounding (tested before the bracket: at the root the step may
            // point, by a hair, at a bracket end that is this very point). For β < 1 (α > 2)
            // the last step is still worth its few ulps of τ: entries at the edge of the
            // support have `d = z − τ` a few ulps of τ wide and `p = d^β`, so an ulp of τ
            // moves them by tens of percent (α = 5, p ≈ 2e-4: within 1 ulp instead of up to 7
            // of the exact threshold). S is evaluated again there, since an entry entering
            // the support adds `d^β ≫ d` (a first-order update left Σp off by 1e-4).
            let next = tau + step;
            if prune && beta < 1.0 && next > lo && next < hi && next != tau {
                let (s2, _, cnt2) = sparsekern::moments(isa, z, next, pw);
                if cnt2 > 0 && s2 > 0.0 {
                    return (next, s2);
                }
            }
            converged = true;
            break;
        }
        let mut next = tau + step;
        if !(next > lo && next < hi) {
            next = 0.5 * (lo + hi);
            if next == lo || next == hi {
                converged = true;
                break;
            }
        } else if prune && !closed && beta >= 1.0 && step.abs() <= 1e-11 * tau.abs() {
            // Newton converges quadratically here (G is smooth near the root for β ≥ 1), so
            // the error after this step is of order step² (far below eps): take it without
            // evaluating again, and move S to first order (dS/dτ = −β·Σ d^{β−1}; the
            // neglected term is again of order step²).
            return (next, s - beta * sq * step);
        }
        tau = next;
    }
    (tau, if converged { s_tau } else { f64::NAN })
}

/// The exact threshold for β = 1 or 2 on the support `{z > τ}`, if consistent with it.
fn closed_form(z: &[f64], tau: f64, pw: Power, isa: Isa) -> Option<f64> {
    let (k, s, q, min_in, max_out) = sparsekern::support_stats(isa, z, tau);
    if k == 0 {
        return None;
    }
    let kf = k as f64;
    let t = if pw == Power::Int(1) {
        (s - 1.0) / kf
    } else {
        let mu = s / kf;
        let d = 1.0 / kf - (q / kf - mu * mu).max(0.0);
        if d < 0.0 {
            return None;
        }
        mu - d.sqrt()
    };
    (t < min_in && t >= max_out).then_some(t)
}

/// Entmax-1.5 of one row. `z` is scratch.
pub fn entmax15_row<T: Float>(x: &[T], out: &mut [T], z: &mut Vec<f64>) {
    sparsekern::with_scratch(|hot| entmax15_row_in(x, out, z, hot, Isa::now()));
}

/// [`entmax15_row`] with all its scratch given.
pub(crate) fn entmax15_row_in<T: Float>(
    x: &[T],
    out: &mut [T],
    z: &mut Vec<f64>,
    hot: &mut Vec<u32>,
    isa: Isa,
) {
    let Some((m, lo)) = special_or_max_bound(x, out, isa, 0.5, Power::Int(2)) else {
        return;
    };
    sparsekern::candidates(isa, x, m, 0.5, lo, z, hot);
    let (tau, _) = solve_threshold(z, Power::Int(2), isa, lo);
    sparsekern::write_output(isa, x, hot, m, 0.5, tau, Power::Int(2), 1.0, out);
}

/// Largest α handled; beyond it `1/(α−1)` is so small that the map is argmax to within
/// rounding, and the search interval for the threshold degenerates.
pub const ALPHA_MAX: f64 = 1e6;

pub(crate) fn check_alpha(alpha: &Params<'_>, n_rows: usize) -> Result<()> {
    alpha.check(
        n_rows,
        "alpha",
        |a| (1.0..=ALPHA_MAX).contains(&a),
        "in [1, 1e6] (1 is softmax, 2 is sparsemax)",
    )
}

/// Largest β = 1/(α − 1) for which the threshold is searched directly (`d = z − τ`); above
/// it, `d = 1 − O(α − 1)` costs a relative error of about `β·eps` in `p`, which float64 results
/// should not carry (1e-14 at the bound) and float32 results cannot see (1e-11).
fn tau_space_max<T: Float>() -> f64 {
    if T::EPSILON > 1e-10 {
        1e5
    } else {
        100.0
    }
}

/// General α-entmax of one row, α > 1. `u` and `idx` are scratch.
pub fn entmax_bisect_row<T: Float>(
    x: &[T],
    alpha: f64,
    out: &mut [T],
    u: &mut Vec<f64>,
    idx: &mut Vec<u32>,
) {
    entmax_general_row(x, alpha, out, u, idx, Isa::now());
}

/// [`entmax_bisect_row`] with the kernels chosen.
pub(crate) fn entmax_general_row<T: Float>(
    x: &[T],
    alpha: f64,
    out: &mut [T],
    u: &mut Vec<f64>,
    idx: &mut Vec<u32>,
    isa: Isa,
) {
    let a = alpha - 1.0;
    let beta = 1.0 / a;
    if beta > tau_space_max::<T>() {
        let Some(m) = special_or_max(x, out) else {
            return;
        };
        entmax_logspace_row(x, m, alpha, out, u, idx);
        return;
    }
    let pw = Power::from_beta(beta);
    let Some((m, lo)) = special_or_max_bound(x, out, isa, a, pw) else {
        return;
    };
    sparsekern::candidates(isa, x, m, a, lo, u, idx);
    // With K candidates the threshold can be as small as −K^{−1/β} and the norm's slope as
    // large as K^{1/β}: beyond f64's range (large α with ties) only the log-space search works.
    if (u.len() as f64).ln() / beta > 600.0 {
        entmax_logspace_row(x, m, alpha, out, u, idx);
        return;
    }
    let (tau, s) = solve_threshold(u, pw, isa, lo);
    if !(s > 0.0 && s.is_finite() && tau.is_finite()) {
        // The search did not converge (not expected with the guard above), and a wrong
        // answer is never worth it.
        entmax_logspace_row(x, m, alpha, out, u, idx);
        return;
    }
    sparsekern::write_output(isa, x, idx, m, a, tau, pw, 1.0 / s, out);
}

/// α-entmax of one row near α = 1, searching over `s = ln(t)/a` (= log of the largest
/// probability, in `[−ln K, 0]`) with `t = −τ ∈ [K^{−a}, 1]` and `u = a·(x − max)`, and
/// evaluating `p_i = exp(s + ln1p(u_i / t)/a)`: as α → 1 this tends to `exp(s + x_i − max)`,
/// i.e. softmax, and keeps the relative precision of `x − max` that `z − τ` loses. Newton
/// steps that leave the bracket fall back to bisection. The final `p` is renormalised.
fn entmax_logspace_row<T: Float>(
    x: &[T],
    m: f64,
    alpha: f64,
    out: &mut [T],
    u: &mut Vec<f64>,
    idx: &mut Vec<u32>,
) {
    let a = alpha - 1.0;
    let beta = 1.0 / a;
    u.clear();
    idx.clear();
    let lo_x = m - beta;
    for (i, &v) in x.iter().enumerate() {
        let v = v.to_f64();
        if v >= lo_x {
            let d = (v - m) * a;
            if d > -1.0 {
                u.push(d);
                idx.push(i as u32);
            }
        }
    }
    let k = u.len() as f64;
    // u/t, where t = exp(a·s) may underflow to 0 for large α: ties with the maximum (u = 0)
    // keep r = 0 (not 0/0), every other entry is then far outside the support (r = −∞).
    let ratio = |ui: f64, t: f64| if ui == 0.0 { 0.0 } else { ui / t };
    // f(s) = Σ exp(s + β·ln1p(u/t)) − 1 with t = exp(a·s); f is increasing in s.
    let eval = |u: &[f64], s: f64| -> (f64, f64) {
        let t = (a * s).exp();
        let (mut f, mut df) = (0.0, 0.0);
        for &ui in u.iter() {
            let r = ratio(ui, t);
            if r > -1.0 {
                let p = (s + beta * r.ln_1p()).exp();
                f += p;
                df += p / (1.0 + r);
            }
        }
        (f - 1.0, df)
    };
    let (mut lo, mut hi) = (-k.ln(), 0.0f64);
    // Start from the softmax value of the largest probability: exact as α → 1, and inside the
    // bracket otherwise.
    let lse: f64 = u.iter().map(|&ui| (ui * beta).exp()).sum::<f64>().ln();
    let mut s = (-lse).clamp(lo, hi);
    // Entries with u ≤ −exp(a·hi) are zero for every s left in the bracket: dropping them
    // whenever `hi` falls shrinks the set the remaining iterations evaluate (two
    // transcendentals per entry) — for small α most first-round candidates go.
    let mut pruned_at = hi;
    for _ in 0..200 {
        let (f, df) = eval(u, s);
        if f == 0.0 {
            break;
        }
        if f < 0.0 {
            lo = s;
        } else {
            hi = s;
        }
        if hi < pruned_at {
            pruned_at = hi;
            // A hair below −t so that rounding in `exp` can never drop a positive entry.
            // (Never above −MIN_POSITIVE: ties with the maximum always stay.)
            let cut = -((a * hi).exp() * (1.0 + 1e-12)).max(f64::MIN_POSITIVE);
            let mut w = 0;
            for j in 0..u.len() {
                if u[j] > cut {
                    u[w] = u[j];
                    idx[w] = idx[j];
                    w += 1;
                }
            }
            u.truncate(w);
            idx.truncate(w);
        }
        let mut next = s - f / df;
        if !(next > lo && next < hi && next.is_finite()) {
            next = 0.5 * (lo + hi);
        }
        let done = (next - s).abs() <= 4.0 * f64::EPSILON * (1.0 + s.abs()) || hi - lo <= 1e-300;
        s = next;
        if done {
            break;
        }
    }
    let t = (a * s).exp();
    let mut total = 0.0;
    for ui in u.iter_mut() {
        let r = ratio(*ui, t);
        *ui = if r > -1.0 {
            (s + beta * r.ln_1p()).exp()
        } else {
            0.0
        };
        total += *ui;
    }
    out.fill(T::ZERO);
    for (&i, &p) in idx.iter().zip(u.iter()) {
        out[i as usize] = T::from_f64(p / total);
    }
}

/// α-entmax of one row for any α ≥ 1 (dispatching the exact special cases).
pub(crate) fn entmax_row<T: Float>(x: &[T], alpha: f64, out: &mut [T], w: &mut Work<T>) {
    if alpha == 1.0 {
        softmax::softmax_row(x, T::ONE, out, &mut w.f);
    } else if alpha == 2.0 {
        sparsemax_row_in(x, out, &mut w.f, &mut w.idx, Isa::now());
    } else if alpha == 1.5 {
        entmax15_row_in(x, out, &mut w.f, &mut w.idx, Isa::now());
    } else {
        entmax_general_row(x, alpha, out, &mut w.f, &mut w.idx, Isa::now());
    }
}

/// Entmax-1.5 along `axis` (exact, sort-based on the candidates).
pub fn entmax15<T: Float>(
    x: &ArrayViewD<'_, T>,
    axis: usize,
    out: &mut ArrayViewMutD<'_, T>,
    threads: Option<usize>,
) -> Result<()> {
    map_rows(x, axis, out, threads, |_, xr, o, w| {
        entmax15_row_in(xr, o, &mut w.f, &mut w.idx, Isa::now());
        Ok(())
    })
}

/// α-entmax along `axis`, α per row (or one for all).
pub fn entmax<T: Float>(
    x: &ArrayViewD<'_, T>,
    axis: usize,
    alpha: Params<'_>,
    out: &mut ArrayViewMutD<'_, T>,
    threads: Option<usize>,
) -> Result<()> {
    let spec = RowSpec::new(x.shape(), axis)?;
    check_alpha(&alpha, spec.n_rows())?;
    map_rows(x, axis, out, threads, |r, xr, o, w| {
        entmax_row(xr, alpha.get(r), o, w);
        Ok(())
    })
}

/// Below this α − 1 the α-gradient uses its α → 1 limit (the general formula divides by
/// (α−1)² and loses about `eps/(α−1)²` to cancellation; the limit is off by O(α−1)).
const ALPHA_GRAD_LIMIT: f64 = 3e-6;

/// VJP of α-entmax from its output, and the gradient w.r.t. α for the row.
///
/// With `s_i = p_i^{2−α}` on the support: `Jg = s⊙g − s·⟨s,g⟩/Σs`. For α, differentiating
/// `p_i = ((α−1)x_i − τ)^{1/(α−1)}` under `Σp = 1` gives, with `q = s/Σs` and `H = Σ p ln p`,
/// `∂p_i/∂α = (p_i − q_i)/(α−1)² − (p_i ln p_i − q_i H)/(α−1)`; at α = 1 the limit is
/// `−p_i((ln p_i)² − Σ p (ln p)²)/2`.
pub(crate) fn entmax_vjp_row<T: Float>(y: &[T], g: &[T], alpha: f64, out: &mut [T]) -> f64 {
    if alpha == 2.0 {
        sparsemax_vjp_row(y, g, out);
    }
    let (mut ss, mut sg, mut h, mut l2) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let (mut gp, mut gplnp, mut gplnp2) = (0.0f64, 0.0f64, 0.0f64);
    let e = 2.0 - alpha;
    let mut nan = false;
    for (&p, &gi) in y.iter().zip(g) {
        let p = p.to_f64();
        let gi = gi.to_f64();
        if p > 0.0 {
            let s = if alpha == 1.0 { p } else { p.powf(e) };
            let lp = p.ln();
            ss += s;
            sg += s * gi;
            h += p * lp;
            l2 += p * lp * lp;
            gp += gi * p;
            gplnp += gi * p * lp;
            gplnp2 += gi * p * lp * lp;
        } else if p.is_nan() {
            nan = true;
        }
    }
    if nan {
        out.fill(T::NAN);
        return f64::NAN;
    }
    if alpha != 2.0 {
        let c = if ss > 0.0 { sg / ss } else { 0.0 };
        for ((o, &p), &gi) in out.iter_mut().zip(y).zip(g) {
            let pf = p.to_f64();
            *o = if pf > 0.0 {
                let s = if alpha == 1.0 { pf } else { pf.powf(e) };
                T::from_f64(s * (gi.to_f64() - c))
            } else {
                T::ZERO
            };
        }
    }
    let a = alpha - 1.0;
    if a < ALPHA_GRAD_LIMIT {
        // Σ g_i ∂p_i/∂α at α = 1.
        return -0.5 * (gplnp2 - gp * l2);
    }
    // Σ g q = sg/ss; Σ g p ln p = gplnp.
    let gq = if ss > 0.0 { sg / ss } else { 0.0 };
    (gp - gq) / (a * a) - (gplnp - gq * h) / a
}

/// VJP of α-entmax from its output; also writes `∂L/∂α` per row into `grad_alpha`
/// (one slot per row) when given.
pub fn entmax_vjp<T: Float>(
    y: &ArrayViewD<'_, T>,
    g: &ArrayViewD<'_, T>,
    axis: usize,
    alpha: Params<'_>,
    out: &mut ArrayViewMutD<'_, T>,
    grad_alpha: Option<&mut [f64]>,
    threads: Option<usize>,
) -> Result<()> {
    let spec = RowSpec::new(y.shape(), axis)?;
    check_alpha(&alpha, spec.n_rows())?;
    let ga = match grad_alpha {
        Some(v) => {
            if v.len() != spec.n_rows() {
                return Err(Error::Internal("grad_alpha has the wrong length".into()));
            }
            Some(PerRow::new(v))
        }
        None => None,
    };
    map_rows2(y, g, axis, out, threads, |r, yr, gr, o, _| {
        let d = entmax_vjp_row(yr, gr, alpha.get(r), o);
        if let Some(ga) = &ga {
            ga.set(r, d);
        }
        Ok(())
    })
}

/// VJP of entmax-1.5 from its output (`s = sqrt(p)`).
pub fn entmax15_vjp<T: Float>(
    y: &ArrayViewD<'_, T>,
    g: &ArrayViewD<'_, T>,
    axis: usize,
    out: &mut ArrayViewMutD<'_, T>,
    threads: Option<usize>,
) -> Result<()> {
    map_rows2(y, g, axis, out, threads, |_, yr, gr, o, _| {
        entmax_vjp_row(yr, gr, 1.5, o);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simplex::sparsemax::sparsemax_row;
    use crate::simplex::sparsemax::sparsemax_row_in;

    #[test]
    fn bisect_agrees_with_exact_cases() {
        let mut w = Work::<f64>::new();
        let x: Vec<f64> = (0..50)
            .map(|i| ((i * 37) % 17) as f64 * 0.3 - 2.0)
            .collect();
        let mut exact = vec![0.0; 50];
        let mut gen = vec![0.0; 50];
        entmax15_row(&x, &mut exact, &mut w.f);
        entmax_bisect_row(&x, 1.5, &mut gen, &mut w.f, &mut w.idx);
        for i in 0..50 {
            assert!(
                (exact[i] - gen[i]).abs() < 1e-13,
                "{i}: {} {}",
                exact[i],
                gen[i]
            );
        }
        sparsemax_row(&x, &mut exact, &mut w.f);
        entmax_bisect_row(&x, 2.0, &mut gen, &mut w.f, &mut w.idx);
        for i in 0..50 {
            assert!((exact[i] - gen[i]).abs() < 1e-13);
        }
        softmax::softmax_row(&x, 1.0, &mut exact, &mut w.f);
        entmax_bisect_row(&x, 1.0 + 1e-9, &mut gen, &mut w.f, &mut w.idx);
        for i in 0..50 {
            assert!((exact[i] - gen[i]).abs() < 1e-7);
        }
    }

    #[test]
    fn newton_threshold_matches_sort() {
        for n in [1usize, 2, 5, 40, 300] {
            for scale in [0.0, 0.01, 0.3, 1.0] {
                let mut z: Vec<f64> = (0..n)
                    .map(|i| -(((i * 7919) % 101) as f64) / 101.0 * scale)
                    .collect();
                let mut s = z.clone();
                s.sort_unstable_by(|a, b| b.total_cmp(a));
                let want = threshold15_sorted(&s);
                let got = threshold15_newton(&mut z);
                assert!(
                    (got - want).abs() < 1e-14,
                    "n={n} scale={scale}: {got} vs {want}"
                );
            }
        }
    }

    fn rows(seed: u64) -> Vec<Vec<f64>> {
        let mut s = seed | 1;
        let mut r = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let mut out = Vec::new();
        for n in [1usize, 2, 3, 7, 16, 17, 40, 100, 1000] {
            for scale in [1e-3, 1.0, 4.0, 1e3] {
                // Roughly normal (sum of uniforms).
                out.push(
                    (0..n)
                        .map(|_| (r() + r() + r() + r() - 2.0) * scale)
                        .collect::<Vec<_>>(),
                );
            }
            out.push((0..n).map(|_| ((r() * 5.0) as i32) as f64).collect());
            out.push(vec![2.0; n]);
        }
        out
    }

    const ALPHAS: [f64; 14] = [
        1.0 + 1e-9,
        1.01,
        1.1,
        1.25,
        4.0 / 3.0,
        1.5,
        1.5000001,
        1.7,
        2.0,
        2.5,
        3.0,
        5.0,
        10.0,
        1e3,
    ];

    /// Whole rows with the AVX-512 kernels against the portable ones (skipped without them).
    #[test]
    fn rows_match_across_kernels() {
        let fast = Isa::now();
        if !matches!(crate::simd::level(), crate::simd::Level::Avx512) {
            return;
        }
        let slow = Isa::PORTABLE;
        let (mut u, mut idx) = (Vec::new(), Vec::new());
        for x in rows(11) {
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            let n = x.len();
            for alpha in ALPHAS {
                let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
                entmax_general_row(&x, alpha, &mut a, &mut u, &mut idx, fast);
                entmax_general_row(&x, alpha, &mut b, &mut u, &mut idx, slow);
                for (p, q) in a.iter().zip(&b) {
                    assert!((p - q).abs() <= 1e-12 * p.abs() + 1e-15, "{alpha}: {p} {q}");
                    assert!(p.to_bits() >> 63 == 0, "negative zero");
                }
                let (mut a, mut b) = (vec![0.0f32; n], vec![0.0f32; n]);
                entmax_general_row(&x32, alpha, &mut a, &mut u, &mut idx, fast);
                entmax_general_row(&x32, alpha, &mut b, &mut u, &mut idx, slow);
                for (p, q) in a.iter().zip(&b) {
                    assert!((p - q).abs() <= 2e-6 * p.abs() + 1e-7, "{alpha}: {p} {q}");
                }
            }
            let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
            sparsemax_row_in(&x, &mut a, &mut u, &mut idx, fast);
            sparsemax_row_in(&x, &mut b, &mut u, &mut idx, slow);
            for (p, q) in a.iter().zip(&b) {
                // Same formula; the threshold may differ in its last bit (order of sums).
                assert!((p - q).abs() <= 1e-14 && p.to_bits() >> 63 == 0, "{p} {q}");
            }
            entmax15_row_in(&x, &mut a, &mut u, &mut idx, fast);
            entmax15_row_in(&x, &mut b, &mut u, &mut idx, slow);
            for (p, q) in a.iter().zip(&b) {
                assert!((p - q).abs() <= 1e-14, "{p} {q}");
            }
        }
    }

    /// The threshold search on `z − τ` against the log-space search it replaced, in float64.
    #[test]
    fn general_path_matches_logspace() {
        let (mut u, mut idx) = (Vec::new(), Vec::new());
        for x in rows(5) {
            let n = x.len();
            let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            for alpha in [1.05, 1.1, 1.25, 4.0 / 3.0, 1.5000001, 1.7, 2.5, 3.0, 5.0] {
                let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
                entmax_bisect_row(&x, alpha, &mut a, &mut u, &mut idx);
                entmax_logspace_row(&x, m, alpha, &mut b, &mut u, &mut idx);
                let tol = if alpha > 2.0 { 1e-9 } else { 1e-13 };
                for (p, q) in a.iter().zip(&b) {
                    assert!((p - q).abs() <= tol, "alpha {alpha} n {n}: {p} {q}");
                }
                assert!((a.iter().sum::<f64>() - 1.0).abs() < 1e-14);
            }
        }
    }

    /// Ties at large α: the threshold underflows in every parametrisation (7^{−999} for
    /// α = 1000); the mass is shared by the tied maxima (this was NaN before).
    #[test]
    fn large_alpha_ties_share_the_mass() {
        let mut w = Work::<f64>::new();
        for alpha in [50.0, 1000.0, 1e6] {
            for n in [2usize, 7, 300] {
                let mut x = vec![2.0; n];
                x[0] = 1.0;
                let mut o = vec![0.0; n];
                entmax_row(&x, alpha, &mut o, &mut w);
                let share = 1.0 / (n - 1) as f64;
                assert!(o[0] == 0.0, "{alpha} {n}");
                for &p in &o[1..] {
                    assert!((p - share).abs() < 1e-14, "{alpha} {n}: {p}");
                }
            }
        }
    }

    #[test]
    fn no_nan_across_alpha() {
        let mut w = Work::<f32>::new();
        for &alpha in &[1.0 + 1e-7, 1.001, 1.1, 1.5, 2.5, 3.0, 5.0, 10.0, 100.0] {
            for scale in [1e-3f32, 1.0, 1000.0] {
                let x: Vec<f32> = (0..300).map(|i| ((i * 7) % 31) as f32 * scale).collect();
                let mut o = vec![0.0f32; 300];
                entmax_row(&x, alpha, &mut o, &mut w);
                let s: f32 = o.iter().sum();
                assert!(
                    o.iter().all(|v| v.is_finite() && *v >= 0.0),
                    "alpha {alpha}"
                );
                assert!((s - 1.0).abs() < 1e-5, "alpha {alpha} sum {s}");
            }
        }
    }
}
