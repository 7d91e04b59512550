//! α-entmax: `p = max((α−1)·x − τ, 0)^{1/(α−1)}`, `Σp = 1` (α = 1: softmax, α = 2: sparsemax).
//!
//! * α = 1.5 has an exact closed form: sort the candidates `z = (x − max)/2 > −1`, and for each
//!   support size k solve `Σ_{i≤k} (z_i − τ)² = 1`, i.e. `τ_k = μ_k − sqrt(1/k − σ_k²)`; the
//!   support is the longest prefix with `τ_k ≤ z_k`.
//! * Other α use a safeguarded Newton iteration on a reparametrised threshold. Write
//!   `a = α − 1`, `u_i = a·(x_i − max) ≤ 0` and `t = max(u) − τ ∈ [K^{−a}, 1]` (`K` = number of
//!   candidates `u > −1`), then `p_i = (u_i + t)₊^{1/a}`. Searching over `s = ln(t)/a`
//!   (= log of the largest probability, in `[−ln K, 0]`) and evaluating
//!   `p_i = exp(s + ln1p(u_i / t)/a)` keeps every quantity well scaled for every α > 1: as
//!   α → 1 it tends to `exp(s + x_i − max)`, i.e. softmax, instead of raising numbers near 1 to
//!   huge powers (the failure behind the `entmax` package's NaNs near α = 1 and in float32).
//!   Newton steps that leave the bracket fall back to bisection; 4–8 iterations reach machine
//!   precision. The final `p` is renormalised.
//!
//! α = 1 and α = 2 dispatch to softmax and sparsemax, so those are exact.

use ndarray::{ArrayViewD, ArrayViewMutD};

use super::layout::{map_rows, map_rows2, Params, PerRow, RowSpec, Work};
use super::sparsemax::{sparsemax_row, sparsemax_vjp_row, special_or_max, unsorted_candidates};
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

/// Entmax-1.5 threshold from unsorted candidates `z ∈ (−1, 0]` without sorting: Newton on the
/// convex decreasing `f(τ) = Σ (z − τ)₊² − 1` from `τ = −1` (where `f ≥ 0`) climbs monotonically
/// to the root, so its support `{z > τ}` only shrinks towards the true one. Once the support
/// stops changing, `τ` is recomputed in closed form on it and checked; any inconsistency (ties
/// at the threshold, rounding) falls back to the sort-based rule.
pub(crate) fn threshold15_newton(z: &mut [f64]) -> f64 {
    // Start from a lower bound nearer the root than −1 (Newton from −1 took ~10 steps). By
    // Cauchy–Schwarz over all K candidates, for τ ≤ μ (their mean)
    // Σ (z − τ)₊² ≥ (Σ (z − τ)₊)²/K ≥ K·(μ − τ)², so f(μ − 1/√K) ≥ 0 and the root is above
    // it. A relative hair below guards against rounding; the final check catches the rest.
    let kf = z.len() as f64;
    let mut tau = -1.0f64;
    if kf > 0.0 {
        let mu = kern::sum(z) / kf;
        let lb = mu - 1.0 / kf.sqrt();
        tau = tau.max(lb - 1e-12 * (1.0 + lb.abs()));
    }
    let mut last_k = f64::NAN;
    for _ in 0..64 {
        let (k, s1, s2) = kern::pos_moments(z, tau);
        if k == last_k || s1 == 0.0 {
            break;
        }
        last_k = k;
        tau += (s2 - 1.0) / (2.0 * s1);
    }
    // Closed form on the support {z > τ} (relative to τ for accuracy).
    let (mut k, mut s, mut q) = (0usize, 0.0f64, 0.0f64);
    let (mut min_in, mut max_out) = (f64::INFINITY, f64::NEG_INFINITY);
    for &v in z.iter() {
        if v > tau {
            k += 1;
            s += v;
            q += v * v;
            min_in = min_in.min(v);
        } else {
            max_out = max_out.max(v);
        }
    }
    if k > 0 {
        let kf = k as f64;
        let mu = s / kf;
        let d = 1.0 / kf - (q / kf - mu * mu).max(0.0);
        if d >= 0.0 {
            let t = mu - d.sqrt();
            if t < min_in && t >= max_out {
                return t;
            }
        }
    }
    z.sort_unstable_by(|a, b| b.total_cmp(a));
    threshold15_sorted(z)
}

/// Entmax-1.5 of one row. `z` is scratch.
pub fn entmax15_row<T: Float>(x: &[T], out: &mut [T], z: &mut Vec<f64>) {
    let Some(m) = special_or_max(x, out) else {
        return;
    };
    unsorted_candidates(x, m, 0.5, z);
    let tau = threshold15_newton(z);
    kern::relu_sq_shift(x, m, 0.5, tau, out);
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

/// General α-entmax of one row, α > 1. `u` and `idx` are scratch.
pub fn entmax_bisect_row<T: Float>(
    x: &[T],
    alpha: f64,
    out: &mut [T],
    u: &mut Vec<f64>,
    idx: &mut Vec<u32>,
) {
    let Some(m) = special_or_max(x, out) else {
        return;
    };
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
    // f(s) = Σ exp(s + β·ln1p(u/t)) − 1 with t = exp(a·s); f is increasing in s.
    let eval = |u: &[f64], s: f64| -> (f64, f64) {
        let t = (a * s).exp();
        let (mut f, mut df) = (0.0, 0.0);
        for &ui in u.iter() {
            let r = ui / t;
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
            let cut = -(a * hi).exp() * (1.0 + 1e-12);
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
        let r = *ui / t;
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
        sparsemax_row(x, out, &mut w.f);
    } else if alpha == 1.5 {
        entmax15_row(x, out, &mut w.f);
    } else {
        entmax_bisect_row(x, alpha, out, &mut w.f, &mut w.idx);
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
        entmax15_row(xr, o, &mut w.f);
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
