//! Negative log-likelihood, its analytic gradient and maximum-likelihood fitting.
//!
//! Gradients are w.r.t. the real and imaginary parts of `a_k`, reported as the complex number
//! `∂L/∂Re a_k + i ∂L/∂Im a_k`, and w.r.t. `scale` and `offset`. Per point, with `z = e^{iπx}`,
//! `g = Σ a_k z^k` and `F = |g|²`:
//! - `∇_a(−ln F) = −2 conj(z)^k / conj(g)`, `∇_a ln(2c_0) = 2a_k / c_0`;
//! - `d ln F / dx = −2π Im(h·conj(g)) / F` with `h = Σ k a_k z^k`;
//! - real line: `ℓ = −ln p(tanh u) − ln sech² u + ln s`, `u = (y − t)/s`, so
//!   `dℓ/du = −(ln p)'·sech² u + 2 tanh u`, `∂ℓ/∂t = −(dℓ/du)/s`, `∂ℓ/∂s = −(u/s)dℓ/du + 1/s`.
//!
//! Penalties (both on `Σ_{n≥1} n²|c_n|²`):
//! - `Density` (default): `γ ∫|p'|² = γ π² Σ n²|c_n|² / c_0²`. Scale-free like `p` itself, so
//!   it smooths the *shape*; this is why it is the default.
//! - `Unnormalized` (paper, Su, codex): `γ ∫|f'|² = 4π²γ Σ n²|c_n|²`. Because `p` ignores
//!   `‖a‖` this one is mostly lowered by shrinking `a`; kept for parity with those sources.
//!
//! Fitting works on the data merged into groups no wider than `δ` (weighted means, summed
//! weights): the likelihood changes by at most ~`max|ℓ''|·δ²/8` per point (≲1e-6 nats at the
//! default δ) and a 10⁶-point fit then costs about as much as a 10⁴-point one.

use rayon::prelude::*;

use super::eval::{cis_block, horner_block, CHUNK, W};
use super::model::{autocorrelation, log_sech2, sech2, Domain, C64};
use crate::error::{Error, Result};
use crate::rng::Stream;
use crate::{parallel, simd};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PenaltyKind {
    Density,
    Unnormalized,
}

impl PenaltyKind {
    pub fn parse(s: &str) -> Result<PenaltyKind> {
        match s {
            "density" => Ok(PenaltyKind::Density),
            "unnormalized" | "unnormalised" => Ok(PenaltyKind::Unnormalized),
            _ => Err(Error::invalid(format!(
                "penalty kind must be 'density' or 'unnormalized', got {s:?}"
            ))),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Penalty {
    pub kind: PenaltyKind,
    pub gamma: f64,
}

impl Penalty {
    pub fn new(kind: PenaltyKind, gamma: f64) -> Result<Penalty> {
        if !(gamma.is_finite() && gamma >= 0.0) {
            return Err(Error::invalid(format!(
                "penalty strength must be finite and >= 0, got {gamma}"
            )));
        }
        Ok(Penalty { kind, gamma })
    }
}

/// Value and gradient of the (penalised) mean NLL of one channel.
#[derive(Clone, Debug, PartialEq)]
pub struct NllGrad {
    pub nll: f64,
    pub grad_a: Vec<C64>,
    pub grad_scale: f64,
    pub grad_offset: f64,
}

#[derive(Clone)]
struct Partial {
    sum: f64,
    wsum: f64,
    acc_re: Vec<[f64; W]>,
    acc_im: Vec<[f64; W]>,
    gt: f64,
    gs: f64,
}

impl Partial {
    fn new(n1: usize, grad: bool) -> Self {
        let k = if grad { n1 } else { 0 };
        Partial {
            sum: 0.0,
            wsum: 0.0,
            acc_re: vec![[0.0; W]; k],
            acc_im: vec![[0.0; W]; k],
            gt: 0.0,
            gs: 0.0,
        }
    }
}

#[inline(always)]
fn fma<const F: bool>(a: f64, b: f64, c: f64) -> f64 {
    if F {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

struct Setup<'a> {
    domain: Domain,
    a: &'a [C64],
    /// `k·a_k`, for `z·g'(z)`.
    ka: &'a [C64],
    scale: f64,
    offset: f64,
    grad: bool,
    /// Powers of two whose product scales the largest weight into `[1, 2)` (see
    /// [`weight_factors`]); `[1, 1]` without weights.
    wscale: [f64; 2],
}

#[inline(always)]
fn chunk_impl<const F: bool>(st: &Setup<'_>, y: &[f64], w: Option<&[f64]>, part: &mut Partial) {
    let inv_s = 1.0 / st.scale;
    let real = st.domain == Domain::Real;
    let mut i = 0;
    while i < y.len() {
        let take = (y.len() - i).min(W);
        let mut wl = [0.0; W];
        let mut yl = [st.offset; W];
        for l in 0..take {
            yl[l] = y[i + l];
            wl[l] = w.map_or(1.0, |w| w[i + l] * st.wscale[0] * st.wscale[1]);
        }
        let mut u = [0.0; W];
        let mut x = [0.0; W];
        for l in 0..W {
            if real {
                u[l] = (yl[l] - st.offset) * inv_s;
                x[l] = u[l].tanh();
            } else {
                x[l] = yl[l];
            }
        }
        let (zr, zi) = cis_block::<F>(&x);
        let (gr, gi) = horner_block::<F>(st.a, &zr, &zi);
        let need_h = real && st.grad;
        let (hr, hi) = if need_h {
            horner_block::<F>(st.ka, &zr, &zi)
        } else {
            ([0.0; W], [0.0; W])
        };
        let mut f = [0.0; W];
        for l in 0..W {
            f[l] = gr[l] * gr[l] + gi[l] * gi[l];
        }
        for l in 0..W {
            // Zero weights (padding lanes, empty bins) must not turn 0·∞ into NaN.
            let mut ell = -f[l].ln();
            if real {
                ell += -log_sech2(u[l]);
            }
            part.sum += if wl[l] != 0.0 { wl[l] * ell } else { 0.0 };
            part.wsum += wl[l];
        }
        if st.grad {
            let mut ur = [0.0; W];
            let mut ui = [0.0; W];
            for l in 0..W {
                let c = if wl[l] != 0.0 {
                    -2.0 * wl[l] / f[l]
                } else {
                    0.0
                };
                ur[l] = c * gr[l];
                ui[l] = c * gi[l];
            }
            accumulate::<F>(&mut part.acc_re, &mut part.acc_im, &ur, &ui, &zr, &zi);
            if real {
                for l in 0..W {
                    if wl[l] == 0.0 {
                        continue;
                    }
                    let dlogf =
                        -2.0 * std::f64::consts::PI * (hi[l] * gr[l] - hr[l] * gi[l]) / f[l];
                    let dl_du = -dlogf * sech2(u[l]) + 2.0 * x[l];
                    part.gt += wl[l] * (-dl_du * inv_s);
                    part.gs += wl[l] * (-u[l] * dl_du * inv_s);
                }
            }
        }
        i += take;
    }
}

/// `acc_k += u·conj(z)^k` over a block.
#[inline(always)]
fn accumulate<const F: bool>(
    acc_re: &mut [[f64; W]],
    acc_im: &mut [[f64; W]],
    ur: &[f64; W],
    ui: &[f64; W],
    zr: &[f64; W],
    zi: &[f64; W],
) {
    #[cfg(target_arch = "x86_64")]
    if F {
        // SAFETY: F = true is instantiated only inside `avx2,fma` functions, called only
        // after `simd::level()` detected those features.
        unsafe { super::avx2::accumulate_powers(acc_re, acc_im, ur, ui, zr, zi) };
        return;
    }
    let mut pr = [1.0; W];
    let mut pi = [0.0; W];
    for (ar, ai) in acc_re.iter_mut().zip(acc_im.iter_mut()) {
        for l in 0..W {
            ar[l] = fma::<F>(ur[l], pr[l], fma::<F>(-ui[l], pi[l], ar[l]));
            ai[l] = fma::<F>(ur[l], pi[l], fma::<F>(ui[l], pr[l], ai[l]));
            let nr = fma::<F>(pr[l], zr[l], pi[l] * zi[l]);
            let ni = fma::<F>(pi[l], zr[l], -(pr[l] * zi[l]));
            pr[l] = nr;
            pi[l] = ni;
        }
    }
}

fn chunk_scalar(st: &Setup<'_>, y: &[f64], w: Option<&[f64]>, part: &mut Partial) {
    chunk_impl::<false>(st, y, w, part)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn chunk_avx2(st: &Setup<'_>, y: &[f64], w: Option<&[f64]>, part: &mut Partial) {
    chunk_impl::<true>(st, y, w, part)
}

fn chunk(st: &Setup<'_>, y: &[f64], w: Option<&[f64]>, part: &mut Partial) {
    #[cfg(target_arch = "x86_64")]
    if matches!(simd::level(), simd::Level::Avx2 | simd::Level::Avx512) {
        // SAFETY: avx2 and fma were detected at run time (`simd::level`).
        unsafe { chunk_avx2(st, y, w, part) };
        return;
    }
    chunk_scalar(st, y, w, part)
}

/// Two powers of two whose product `2^-e` brings `wmax` (finite, > 0) into `[1, 2)`.
///
/// The NLL is a weighted mean, so only the weights' ratios matter, but `Σ w·ℓ` overflows to
/// inf for weights near 1e308 and tiny (subnormal) weights lose their precision. Scaling by a
/// power of two is exact, so weights whose maximum already lies in `[1, 2)` (e.g. all ones)
/// give bit-identical results, and weights that differ by a power of two give the same ones.
/// Two factors because `2^-e` alone overflows for subnormal `wmax` (`e` down to −1074).
pub fn weight_factors(wmax: f64) -> [f64; 2] {
    if !(wmax.is_finite() && wmax > 0.0) {
        return [1.0, 1.0];
    }
    // The exponent from the bits: exact, unlike `log2` near powers of two.
    let bits = wmax.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let e = if biased == 0 {
        // Subnormal: value = mantissa · 2^-1074.
        let mant = bits & ((1u64 << 52) - 1);
        63 - mant.leading_zeros() as i32 - 1074
    } else {
        biased - 1023
    };
    let t = -e;
    let a = t / 2;
    [2f64.powi(a), 2f64.powi(t - a)]
}

/// `w` scaled so that its maximum lies in `[1, 2)` (see [`weight_factors`]).
pub fn normalise_weights(w: &[f64]) -> Vec<f64> {
    let f = weight_factors(w.iter().fold(0.0, |m: f64, &v| m.max(v)));
    w.iter().map(|&v| v * f[0] * f[1]).collect()
}

/// Checks data (and weights) for one channel.
pub fn check_data(domain: Domain, y: &[f64], w: Option<&[f64]>, what: &str) -> Result<()> {
    if y.is_empty() {
        return Err(Error::invalid(format!("{what}: no data points")));
    }
    if let Some(i) = y.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(format!(
            "{what}: point {i} is not finite ({})",
            y[i]
        )));
    }
    if domain == Domain::Interval {
        if let Some(i) = y.iter().position(|v| v.abs() > 1.0) {
            return Err(Error::invalid(format!(
                "{what}: point {i} = {} lies outside the support [-1, 1] of domain='interval'",
                y[i]
            )));
        }
    }
    if let Some(w) = w {
        if w.len() != y.len() {
            return Err(Error::invalid(format!(
                "{what}: {} weights for {} points",
                w.len(),
                y.len()
            )));
        }
        if let Some(i) = w.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
            return Err(Error::invalid(format!(
                "{what}: weight {i} must be finite and >= 0, got {}",
                w[i]
            )));
        }
        if !(w.iter().sum::<f64>() > 0.0) {
            return Err(Error::invalid(format!("{what}: the weights sum to zero")));
        }
    }
    Ok(())
}

/// Mean NLL (+ penalty) and, if `grad`, its gradient, for one channel with raw coefficients.
/// `parallel` splits the points across the current pool (call inside `parallel::run`).
#[allow(clippy::too_many_arguments)]
pub fn nll_grad_channel(
    domain: Domain,
    a: &[C64],
    scale: f64,
    offset: f64,
    y: &[f64],
    w: Option<&[f64]>,
    penalty: Option<Penalty>,
    grad: bool,
    parallel: bool,
) -> NllGrad {
    let n1 = a.len();
    let c0: f64 = a.iter().map(|v| v.norm_sqr()).sum();
    let ka: Vec<C64> = a
        .iter()
        .enumerate()
        .map(|(k, v)| v.scale(k as f64))
        .collect();
    // Normalised per call (not only in `fit`) so that `nll`/`nll_grad` and Adam's
    // minibatches are free of overflow too; one pass over w, small next to the Horner work.
    let wscale = w.map_or([1.0, 1.0], |w| {
        weight_factors(w.iter().fold(0.0, |m: f64, &v| m.max(v)))
    });
    let st = Setup {
        domain,
        a,
        ka: &ka,
        scale,
        offset,
        grad,
        wscale,
    };
    let run_chunk = |(k, ys): (usize, &[f64])| {
        let mut p = Partial::new(n1, grad);
        let ws = w.map(|w| &w[k * CHUNK..k * CHUNK + ys.len()]);
        chunk(&st, ys, ws, &mut p);
        p
    };
    // Partials are combined in chunk order, so results do not depend on the thread count.
    let parts: Vec<Partial> = if parallel && y.len() > CHUNK {
        y.par_chunks(CHUNK).enumerate().map(run_chunk).collect()
    } else {
        y.chunks(CHUNK).enumerate().map(run_chunk).collect()
    };
    let mut sum = 0.0;
    let mut wsum = 0.0;
    let mut gt = 0.0;
    let mut gs = 0.0;
    let mut acc = vec![C64::default(); if grad { n1 } else { 0 }];
    for p in &parts {
        sum += p.sum;
        wsum += p.wsum;
        gt += p.gt;
        gs += p.gs;
        for (k, v) in acc.iter_mut().enumerate() {
            let re: f64 = p.acc_re[k].iter().sum();
            let im: f64 = p.acc_im[k].iter().sum();
            *v = v.add(C64::new(re, im));
        }
    }
    let mut nll = sum / wsum + (2.0 * c0).ln();
    if domain == Domain::Real {
        nll += scale.ln();
    }
    let mut out = NllGrad {
        nll,
        grad_a: Vec::new(),
        grad_scale: 0.0,
        grad_offset: 0.0,
    };
    if grad {
        out.grad_a = acc
            .iter()
            .zip(a)
            .map(|(g, ak)| g.scale(1.0 / wsum).add(ak.scale(2.0 / c0)))
            .collect();
        if domain == Domain::Real {
            out.grad_offset = gt / wsum;
            out.grad_scale = gs / wsum + 1.0 / scale;
        }
    }
    if let Some(pen) = penalty {
        if pen.gamma > 0.0 {
            let (v, g) = penalty_value_grad(a, pen, grad);
            out.nll += v;
            for (o, gi) in out.grad_a.iter_mut().zip(g) {
                *o = o.add(gi);
            }
        }
    }
    out
}

/// Penalty value and its gradient w.r.t. `a`.
pub fn penalty_value_grad(a: &[C64], pen: Penalty, grad: bool) -> (f64, Vec<C64>) {
    let c = autocorrelation(a);
    let n1 = a.len();
    let s: f64 = (1..n1).map(|n| (n * n) as f64 * c[n].norm_sqr()).sum();
    let c0 = c[0].re;
    let pi2 = std::f64::consts::PI * std::f64::consts::PI;
    let (value, ks, kc) = match pen.kind {
        // R = γπ² S / c0²: ∇R = γπ²(∇S / c0² − 2 S ∇c0 / c0³)
        PenaltyKind::Density => (
            pen.gamma * pi2 * s / (c0 * c0),
            pen.gamma * pi2 / (c0 * c0),
            -2.0 * pen.gamma * pi2 * s / (c0 * c0 * c0),
        ),
        PenaltyKind::Unnormalized => (4.0 * pi2 * pen.gamma * s, 4.0 * pi2 * pen.gamma, 0.0),
    };
    if !grad {
        return (value, Vec::new());
    }
    // ∇_j S = 2 Σ_n n² (conj(c_n) a_{j+n} + c_n a_{j−n});  ∇_j c0 = 2 a_j.
    let g = (0..n1)
        .map(|j| {
            let mut acc = C64::default();
            for n in 1..n1 {
                let w = (n * n) as f64;
                if j + n < n1 {
                    acc = acc.add(c[n].conj().mul(a[j + n]).scale(w));
                }
                if j >= n {
                    acc = acc.add(c[n].mul(a[j - n]).scale(w));
                }
            }
            acc.scale(2.0 * ks).add(a[j].scale(2.0 * kc))
        })
        .collect();
    (value, g)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Optimizer {
    Lbfgs,
    Adam,
}

impl Optimizer {
    pub fn parse(s: &str) -> Result<Optimizer> {
        match s {
            "lbfgs" | "l-bfgs" => Ok(Optimizer::Lbfgs),
            "adam" => Ok(Optimizer::Adam),
            _ => Err(Error::invalid(format!(
                "optimizer must be 'lbfgs' or 'adam', got {s:?}"
            ))),
        }
    }
}

#[derive(Clone, Debug)]
pub struct FitOptions {
    pub n_coeffs: usize,
    pub domain: Domain,
    pub penalty: Option<Penalty>,
    pub optimizer: Optimizer,
    /// Iterations (L-BFGS) or steps (Adam).
    pub steps: usize,
    pub lr: f64,
    /// Adam minibatch size (`None`: full batch); drawn with replacement and capped at the
    /// number of points.
    pub batch_size: Option<usize>,
    pub seed: u64,
    /// Merge points closer than this fraction of the natural resolution (0 disables).
    pub compress: bool,
    pub tol: f64,
}

#[derive(Clone, Debug)]
pub struct FitResult {
    pub coeffs: Vec<C64>,
    pub scale: f64,
    pub offset: f64,
    pub nll: f64,
    pub iterations: usize,
}

/// Sorted `(value, weight)` merged into groups of width ≤ `delta`, represented by their
/// weighted mean. Exact first moment per group; the NLL error is second order in `delta`.
pub fn compress(y: &[f64], w: Option<&[f64]>, delta: f64, parallel: bool) -> (Vec<f64>, Vec<f64>) {
    let mut pairs: Vec<(f64, f64)> = y
        .iter()
        .enumerate()
        .map(|(i, &v)| (v, w.map_or(1.0, |w| w[i])))
        .filter(|p| p.1 > 0.0)
        .collect();
    sort_pairs(&mut pairs, parallel);
    let mut ys = Vec::new();
    let mut ws = Vec::new();
    let mut i = 0;
    while i < pairs.len() {
        let start = pairs[i].0;
        let mut sw = 0.0;
        let mut swy = 0.0;
        while i < pairs.len() && pairs[i].0 - start <= delta {
            sw += pairs[i].1;
            swy += pairs[i].1 * (pairs[i].0 - start);
            i += 1;
        }
        ys.push(start + swy / sw);
        ws.push(sw);
    }
    (ys, ws)
}

/// Sorts `(value, weight)` pairs by value, then weight: a total order, so the result is the
/// same array whichever sort runs. With `parallel` (inside `parallel::run`) rayon's parallel
/// sort: the sort was most of a one-channel fit on 10⁶ points, which took longer on two
/// threads than on one (53.9 vs 49.2 ms) when only the final NLL was split.
fn sort_pairs(pairs: &mut [(f64, f64)], parallel: bool) {
    let order = |a: &(f64, f64), b: &(f64, f64)| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1));
    if parallel {
        pairs.par_sort_unstable_by(order);
    } else {
        pairs.sort_unstable_by(order);
    }
}

fn weighted_quantile(sorted: &[(f64, f64)], total: f64, q: f64) -> f64 {
    let target = q * total;
    let mut acc = 0.0;
    for &(v, w) in sorted {
        acc += w;
        if acc >= target {
            return v;
        }
    }
    sorted.last().map_or(0.0, |p| p.0)
}

/// Robust centre and spread (median, IQR/1.349 with fallbacks) of weighted data.
fn centre_spread(y: &[f64], w: Option<&[f64]>, parallel: bool) -> (f64, f64) {
    let mut pairs: Vec<(f64, f64)> = y
        .iter()
        .enumerate()
        .map(|(i, &v)| (v, w.map_or(1.0, |w| w[i])))
        .collect();
    sort_pairs(&mut pairs, parallel);
    let total: f64 = pairs.iter().map(|p| p.1).sum();
    let med = weighted_quantile(&pairs, total, 0.5);
    let iqr = weighted_quantile(&pairs, total, 0.75) - weighted_quantile(&pairs, total, 0.25);
    let mut spread = iqr / 1.349;
    if !(spread > 0.0) {
        let mean = pairs.iter().map(|p| p.0 * p.1).sum::<f64>() / total;
        let var = pairs
            .iter()
            .map(|p| p.1 * (p.0 - mean).powi(2))
            .sum::<f64>()
            / total;
        spread = var.sqrt();
    }
    if !(spread > 0.0 && spread.is_finite()) {
        spread = 1.0;
    }
    (med, spread)
}

/// The objective the optimisers see: θ = [Re a, Im a, (ln s, τ)], `t = t0 + s0·τ`. Adds the
/// gauge term ½(ln c0)², which leaves `p` untouched (it is minimised by rescaling `a` alone)
/// but removes the flat direction `a → λa` that would otherwise let `‖a‖` drift.
struct Objective<'a> {
    domain: Domain,
    n1: usize,
    y: &'a [f64],
    w: Option<&'a [f64]>,
    penalty: Option<Penalty>,
    t0: f64,
    s0: f64,
    parallel: bool,
}

impl Objective<'_> {
    fn dim(&self) -> usize {
        2 * self.n1 + if self.domain == Domain::Real { 2 } else { 0 }
    }

    fn unpack(&self, th: &[f64]) -> (Vec<C64>, f64, f64) {
        let a = (0..self.n1)
            .map(|k| C64::new(th[k], th[self.n1 + k]))
            .collect();
        if self.domain == Domain::Real {
            let s = th[2 * self.n1].exp();
            (a, s, self.t0 + self.s0 * th[2 * self.n1 + 1])
        } else {
            (a, 1.0, 0.0)
        }
    }

    fn eval_on(&self, th: &[f64], y: &[f64], w: Option<&[f64]>, g: &mut [f64]) -> f64 {
        let (a, s, t) = self.unpack(th);
        let r = nll_grad_channel(
            self.domain,
            &a,
            s,
            t,
            y,
            w,
            self.penalty,
            true,
            self.parallel,
        );
        let c0: f64 = a.iter().map(|v| v.norm_sqr()).sum();
        let lc = c0.ln();
        for k in 0..self.n1 {
            let gk = r.grad_a[k].add(a[k].scale(2.0 * lc / c0));
            g[k] = gk.re;
            g[self.n1 + k] = gk.im;
        }
        if self.domain == Domain::Real {
            g[2 * self.n1] = r.grad_scale * s;
            g[2 * self.n1 + 1] = r.grad_offset * self.s0;
        }
        r.nll + 0.5 * lc * lc
    }

    fn eval(&self, th: &[f64], g: &mut [f64]) -> f64 {
        self.eval_on(th, self.y, self.w, g)
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn lbfgs(obj: &Objective<'_>, th: &mut [f64], max_iter: usize, tol: f64) -> usize {
    const M: usize = 10;
    let d = th.len();
    let mut g = vec![0.0; d];
    let mut f = obj.eval(th, &mut g);
    let mut hist_s: Vec<Vec<f64>> = Vec::new();
    let mut hist_y: Vec<Vec<f64>> = Vec::new();
    let mut hist_rho: Vec<f64> = Vec::new();
    let mut gn = vec![0.0; d];
    let mut trial = vec![0.0; d];
    let mut small = 0;
    for it in 0..max_iter {
        if !f.is_finite() || g.iter().map(|v| v.abs()).fold(0.0, f64::max) < tol {
            return it;
        }
        // Two-loop recursion.
        let mut q = g.clone();
        let k = hist_s.len();
        let mut alpha = vec![0.0; k];
        for i in (0..k).rev() {
            alpha[i] = hist_rho[i] * dot(&hist_s[i], &q);
            for j in 0..d {
                q[j] -= alpha[i] * hist_y[i][j];
            }
        }
        let gamma = if k > 0 {
            dot(&hist_s[k - 1], &hist_y[k - 1]) / dot(&hist_y[k - 1], &hist_y[k - 1])
        } else {
            1.0 / dot(&g, &g).sqrt().max(1.0)
        };
        for v in q.iter_mut() {
            *v *= gamma;
        }
        for i in 0..k {
            let b = hist_rho[i] * dot(&hist_y[i], &q);
            for j in 0..d {
                q[j] += hist_s[i][j] * (alpha[i] - b);
            }
        }
        let mut dir: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &dir);
        if !(slope < 0.0) {
            hist_s.clear();
            hist_y.clear();
            hist_rho.clear();
            dir = g.iter().map(|v| -v / dot(&g, &g).sqrt().max(1.0)).collect();
            slope = dot(&g, &dir);
        }
        // Backtracking (Armijo) line search with quadratic interpolation.
        let mut step = 1.0;
        let mut fnew = f;
        let mut ok = false;
        for _ in 0..40 {
            for j in 0..d {
                trial[j] = th[j] + step * dir[j];
            }
            fnew = obj.eval(&trial, &mut gn);
            if fnew.is_finite() && fnew <= f + 1e-4 * step * slope {
                ok = true;
                break;
            }
            let denom = 2.0 * (fnew - f - step * slope);
            let next = if fnew.is_finite() && denom > 0.0 {
                (-slope * step * step / denom).clamp(0.1 * step, 0.5 * step)
            } else {
                0.25 * step
            };
            step = next;
        }
        if !ok {
            return it;
        }
        let s: Vec<f64> = (0..d).map(|j| trial[j] - th[j]).collect();
        let y: Vec<f64> = (0..d).map(|j| gn[j] - g[j]).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 * dot(&s, &s).sqrt() * dot(&y, &y).sqrt() {
            if hist_s.len() == M {
                hist_s.remove(0);
                hist_y.remove(0);
                hist_rho.remove(0);
            }
            hist_s.push(s);
            hist_y.push(y);
            hist_rho.push(1.0 / sy);
        }
        th.copy_from_slice(&trial);
        g.copy_from_slice(&gn);
        let decrease = f - fnew;
        f = fnew;
        if decrease <= 1e-13 * f.abs().max(1.0) {
            small += 1;
            if small >= 3 {
                return it + 1;
            }
        } else {
            small = 0;
        }
    }
    max_iter
}

#[allow(clippy::too_many_arguments)]
fn adam(
    obj: &Objective<'_>,
    th: &mut [f64],
    steps: usize,
    lr: f64,
    batch: Option<usize>,
    full_y: &[f64],
    full_w: Option<&[f64]>,
    seed: u64,
) -> usize {
    let d = th.len();
    let (b1, b2, eps): (f64, f64, f64) = (0.9, 0.999, 1e-8);
    let mut m = vec![0.0; d];
    let mut v = vec![0.0; d];
    let mut g = vec![0.0; d];
    let mut by = Vec::new();
    let mut bw = Vec::new();
    for t in 1..=steps {
        match batch {
            Some(bs) => {
                let mut s = Stream::new(seed, 1 + t as u64);
                by.clear();
                bw.clear();
                // A batch larger than the data only repeats points (it is drawn with
                // replacement) and an unbounded one would exhaust memory: cap it at the
                // number of points, as documented in `FourierDensity.fit`.
                for _ in 0..bs.min(full_y.len()) {
                    let i = s.below(full_y.len() as u64) as usize;
                    by.push(full_y[i]);
                    bw.push(full_w.map_or(1.0, |w| w[i]));
                }
                if bw.iter().sum::<f64>() <= 0.0 {
                    continue;
                }
                obj.eval_on(th, &by, Some(&bw), &mut g);
            }
            None => {
                obj.eval(th, &mut g);
            }
        }
        if g.iter().any(|x| !x.is_finite()) {
            return t;
        }
        let c1 = 1.0 - b1.powi(t as i32);
        let c2 = 1.0 - b2.powi(t as i32);
        for j in 0..d {
            m[j] = b1 * m[j] + (1.0 - b1) * g[j];
            v[j] = b2 * v[j] + (1.0 - b2) * g[j] * g[j];
            th[j] -= lr * (m[j] / c1) / ((v[j] / c2).sqrt() + eps);
        }
    }
    steps
}

/// Fits one channel.
pub fn fit_channel(
    y: &[f64],
    w: Option<&[f64]>,
    opts: &FitOptions,
    channel: u64,
    parallel: bool,
) -> Result<FitResult> {
    check_data(opts.domain, y, w, &format!("channel {channel}"))?;
    // Merging, the robust centre/spread and Adam's batches all sum weights: bring them to a
    // common scale first so that huge (1e307) or subnormal weights neither overflow nor
    // vanish there. The NLL is a weighted mean, so this leaves the fit unchanged.
    let wn = w.map(normalise_weights);
    let w = wn.as_deref();
    let n1 = opts.n_coeffs;
    let (t0, s0) = match opts.domain {
        Domain::Interval => (0.0, 1.0),
        Domain::Real => {
            let (c, s) = centre_spread(y, w, parallel);
            (c, 1.5 * s)
        }
    };
    let delta = 1e-3 / n1 as f64
        * match opts.domain {
            Domain::Interval => 1.0,
            Domain::Real => s0,
        };
    let (cy, cw);
    let (wy, ww): (&[f64], Option<&[f64]>) = if opts.compress && y.len() > 4 * CHUNK {
        (cy, cw) = compress(y, w, delta, parallel);
        (&cy, Some(&cw))
    } else {
        (y, w)
    };
    let obj = Objective {
        domain: opts.domain,
        n1,
        y: wy,
        w: ww,
        penalty: opts.penalty,
        t0,
        s0,
        parallel,
    };
    let mut th = vec![0.0; obj.dim()];
    let mut rng = Stream::new(opts.seed, channel);
    th[0] = 1.0;
    for k in 1..n1 {
        th[k] = 0.01 * rng.normal();
        th[n1 + k] = 0.01 * rng.normal();
    }
    if opts.domain == Domain::Real {
        th[2 * n1] = s0.ln();
    }
    let iterations = match opts.optimizer {
        Optimizer::Lbfgs => lbfgs(&obj, &mut th, opts.steps, opts.tol),
        Optimizer::Adam => adam(
            &obj,
            &mut th,
            opts.steps,
            opts.lr,
            opts.batch_size,
            y,
            w,
            opts.seed ^ channel.wrapping_mul(0x9E37),
        ),
    };
    let (a, s, t) = obj.unpack(&th);
    // Divergence shows up as any parameter the model cannot hold, not only a non-finite one:
    // `s = exp(θ)` underflows to 0 for θ < −745 and coefficients can all collapse to 0. So ask
    // the constructor the caller's result goes through, and report divergence instead of its
    // confusing "scale must be > 0" message.
    // (`unpack` gives s = 1, t = 0 on the interval.)
    if super::model::Channel::new(a.clone(), s, t, channel as usize).is_err() {
        return Err(Error::invalid(format!(
            "channel {channel}: the optimiser diverged (try a smaller lr or a penalty)"
        )));
    }
    // Report the NLL on the data as given, not the merged copy.
    let r = nll_grad_channel(opts.domain, &a, s, t, y, w, opts.penalty, false, parallel);
    Ok(FitResult {
        coeffs: a,
        scale: s,
        offset: t,
        nll: r.nll,
        iterations,
    })
}

/// Fits `rows` channels, each to its own row of `m` points (`w` laid out the same).
pub fn fit(
    y: &[f64],
    w: Option<&[f64]>,
    rows: usize,
    m: usize,
    opts: &FitOptions,
    num_threads: Option<usize>,
) -> Result<Vec<FitResult>> {
    if opts.n_coeffs == 0 || opts.n_coeffs > super::model::MAX_DEGREE + 1 {
        return Err(Error::invalid(format!(
            "n_coeffs must be in 1..={}, got {}",
            super::model::MAX_DEGREE + 1,
            opts.n_coeffs
        )));
    }
    if rows == 0 || y.len() != rows * m {
        return Err(Error::invalid(format!(
            "data of length {} is not {rows} rows of {m}",
            y.len()
        )));
    }
    if !(opts.lr.is_finite() && opts.lr > 0.0) {
        return Err(Error::invalid(format!("lr must be > 0, got {}", opts.lr)));
    }
    if opts.batch_size == Some(0) {
        return Err(Error::invalid("batch_size must be at least 1"));
    }
    let row = |c: usize| {
        let yr = &y[c * m..(c + 1) * m];
        let wr = w.map(|w| &w[c * m..(c + 1) * m]);
        (yr, wr)
    };
    let threads = parallel::effective_threads(num_threads, rows * m.div_ceil(CHUNK))?;
    parallel::run(num_threads, rows * m.div_ceil(CHUNK), |par| {
        // Channels across threads when there are enough of them, else chunks within each.
        let across = par && rows >= threads;
        parallel::map(across, rows, |c| {
            let (yr, wr) = row(c);
            fit_channel(yr, wr, opts, c as u64, par && !across)
        })
        .into_iter()
        .collect::<Result<Vec<_>>>()
    })?
}

/// Mean NLL (and gradient) of every channel of `model` at its points (`rows` is 1 or C,
/// each row holds `m` points; `w` is laid out the same).
#[allow(clippy::too_many_arguments)]
pub fn nll_grad_model(
    model: &super::model::Model,
    y: &[f64],
    w: Option<&[f64]>,
    rows: usize,
    m: usize,
    penalty: Option<Penalty>,
    grad: bool,
    num_threads: Option<usize>,
) -> Result<Vec<NllGrad>> {
    let c = model.n_channels();
    super::eval::check_rows(c, y.len(), rows, m)?;
    if let Some(w) = w {
        if w.len() != y.len() {
            return Err(Error::invalid(format!(
                "weights have {} entries for {} points",
                w.len(),
                y.len()
            )));
        }
    }
    let row = |ci: usize| {
        let r = if rows == 1 { 0 } else { ci };
        (&y[r * m..(r + 1) * m], w.map(|w| &w[r * m..(r + 1) * m]))
    };
    for ci in 0..rows {
        let (yr, wr) = row(ci);
        check_data(model.domain, yr, wr, &format!("row {ci}"))?;
    }
    let tasks = c * m.div_ceil(CHUNK);
    let threads = parallel::effective_threads(num_threads, tasks)?;
    parallel::run(num_threads, tasks, |par| {
        let one = |ci: usize, par: bool| {
            let ch = &model.channels[ci];
            let (yr, wr) = row(ci);
            nll_grad_channel(
                model.domain,
                &ch.coeffs,
                ch.scale,
                ch.offset,
                yr,
                wr,
                penalty,
                grad,
                par,
            )
        };
        let across = par && c >= threads;
        parallel::map(across, c, |ci| one(ci, par && !across))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand_a(n1: usize, seed: u64) -> Vec<C64> {
        let mut s = Stream::new(seed, 0);
        (0..n1).map(|_| C64::new(s.normal(), s.normal())).collect()
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let mut s = Stream::new(5, 1);
        let y: Vec<f64> = (0..300).map(|_| 2.0 * s.normal() + 0.5).collect();
        let w: Vec<f64> = (0..300).map(|_| s.next_f64() + 0.1).collect();
        let x: Vec<f64> = y.iter().map(|v| (v / 4.0).tanh()).collect();
        for (domain, pts) in [(Domain::Real, &y), (Domain::Interval, &x)] {
            for pen in [
                None,
                Some(Penalty::new(PenaltyKind::Density, 0.01).unwrap()),
                Some(Penalty::new(PenaltyKind::Unnormalized, 0.01).unwrap()),
            ] {
                let a = rand_a(6, 3);
                let (sc, off) = (1.3, 0.2);
                let r = nll_grad_channel(domain, &a, sc, off, pts, Some(&w), pen, true, false);
                let h = 1e-6;
                let f = |a: &[C64], sc: f64, off: f64| {
                    nll_grad_channel(domain, a, sc, off, pts, Some(&w), pen, false, false).nll
                };
                for k in 0..a.len() {
                    for part in 0..2 {
                        let mut ap = a.clone();
                        let mut am = a.clone();
                        if part == 0 {
                            ap[k].re += h;
                            am[k].re -= h;
                        } else {
                            ap[k].im += h;
                            am[k].im -= h;
                        }
                        let fd = (f(&ap, sc, off) - f(&am, sc, off)) / (2.0 * h);
                        let an = if part == 0 {
                            r.grad_a[k].re
                        } else {
                            r.grad_a[k].im
                        };
                        assert!(
                            (fd - an).abs() < 1e-6 * (1.0 + an.abs()),
                            "{domain:?} {k} {part}: {fd} {an}"
                        );
                    }
                }
                if domain == Domain::Real {
                    let fd = (f(&a, sc + h, off) - f(&a, sc - h, off)) / (2.0 * h);
                    assert!((fd - r.grad_scale).abs() < 1e-6, "{fd} {}", r.grad_scale);
                    let fd = (f(&a, sc, off + h) - f(&a, sc, off - h)) / (2.0 * h);
                    assert!((fd - r.grad_offset).abs() < 1e-6, "{fd} {}", r.grad_offset);
                }
            }
        }
    }

    #[test]
    fn fit_recovers_a_gaussian() {
        let mut s = Stream::new(9, 0);
        let y: Vec<f64> = (0..5000).map(|_| 3.0 + 0.5 * s.normal()).collect();
        let opts = FitOptions {
            n_coeffs: 6,
            domain: Domain::Real,
            penalty: None,
            optimizer: Optimizer::Lbfgs,
            steps: 300,
            lr: 0.01,
            batch_size: None,
            seed: 0,
            compress: true,
            tol: 1e-9,
        };
        let r = fit(&y, None, 1, y.len(), &opts, Some(1)).unwrap();
        // Entropy of N(3, 0.5²) is 0.5 ln(2πe·0.25) ≈ 0.7258.
        assert!(r[0].nll < 0.74, "{}", r[0].nll);
    }

    #[test]
    fn weight_factors_bring_the_maximum_into_one_two() {
        for &w in &[
            1.0,
            1.5,
            1e308,
            f64::MAX,
            3e-5,
            1e-320,
            5e-324,
            2.0f64.powi(-1022),
        ] {
            let f = weight_factors(w);
            let v = w * f[0] * f[1];
            assert!((1.0..2.0).contains(&v), "{w:e} -> {v}");
        }
        assert_eq!(weight_factors(1.25), [1.0, 1.0]);
    }

    #[test]
    fn nll_does_not_depend_on_the_weights_scale() {
        let mut s = Stream::new(3, 2);
        let y: Vec<f64> = (0..200).map(|_| 1.5 * s.normal()).collect();
        let w: Vec<f64> = (0..200).map(|_| s.next_f64() + 0.5).collect();
        let a = rand_a(5, 1);
        let base = nll_grad_channel(Domain::Real, &a, 1.3, 0.1, &y, Some(&w), None, true, false);
        // Powers of two: exactly the same. 1e308 overflowed Σw·ℓ; 1e-320 lost precision.
        for k in [2.0f64.powi(1000), 2.0f64.powi(-1000)] {
            let wk: Vec<f64> = w.iter().map(|v| v * k).collect();
            let r = nll_grad_channel(Domain::Real, &a, 1.3, 0.1, &y, Some(&wk), None, true, false);
            assert_eq!(r, base);
        }
        let none = nll_grad_channel(Domain::Real, &a, 1.3, 0.1, &y, None, None, true, false);
        for wv in [1e308, 1e-320] {
            let wk = vec![wv; 200];
            let r = nll_grad_channel(Domain::Real, &a, 1.3, 0.1, &y, Some(&wk), None, true, false);
            assert!(
                (r.nll - none.nll).abs() < 1e-12,
                "{wv:e}: {} {}",
                r.nll,
                none.nll
            );
            for (g, h) in r.grad_a.iter().zip(&none.grad_a) {
                assert!((g.re - h.re).abs() + (g.im - h.im).abs() < 1e-12, "{wv:e}");
            }
            assert!((r.grad_offset - none.grad_offset).abs() < 1e-12, "{wv:e}");
            assert!((r.grad_scale - none.grad_scale).abs() < 1e-12, "{wv:e}");
        }
    }

    fn gauss_opts(optimizer: Optimizer) -> FitOptions {
        FitOptions {
            n_coeffs: 5,
            domain: Domain::Real,
            penalty: None,
            optimizer,
            steps: 50,
            lr: 0.01,
            batch_size: None,
            seed: 0,
            compress: true,
            tol: 1e-9,
        }
    }

    #[test]
    fn fit_with_huge_or_tiny_weights_matches_unit_weights() {
        let mut s = Stream::new(1, 4);
        let y: Vec<f64> = (0..300).map(|_| s.normal()).collect();
        for opt in [Optimizer::Lbfgs, Optimizer::Adam] {
            let mut o = gauss_opts(opt);
            o.batch_size = (opt == Optimizer::Adam).then_some(64);
            let want = fit(&y, Some(&vec![1.0; 300]), 1, 300, &o, Some(1)).unwrap();
            for wv in [1e307, 1e-320] {
                let got = fit(&y, Some(&vec![wv; 300]), 1, 300, &o, Some(1)).unwrap();
                assert!(got[0].iterations > 0, "{opt:?} {wv:e}");
                let (g, w) = (got[0].nll, want[0].nll);
                assert!((g - w).abs() < 1e-9, "{opt:?} {wv:e}: {g} {w}");
            }
        }
    }

    #[test]
    fn adam_batch_larger_than_the_data_is_capped() {
        let y: Vec<f64> = (0..40).map(|i| i as f64 / 10.0).collect();
        let mut o = gauss_opts(Optimizer::Adam);
        o.steps = 2;
        // 2^40 samples per step would need 8 TiB; capped at the 40 points it is instant.
        o.batch_size = Some(1 << 40);
        let r = fit(&y, None, 1, 40, &o, Some(1)).unwrap();
        assert!(r[0].nll.is_finite());
        o.batch_size = Some(0);
        assert!(fit(&y, None, 1, 40, &o, Some(1)).is_err());
    }

    #[test]
    fn divergence_with_an_underflowed_scale_is_reported_as_such() {
        let mut s = Stream::new(2, 4);
        let y: Vec<f64> = (0..300).map(|_| s.normal()).collect();
        let mut o = gauss_opts(Optimizer::Adam);
        o.lr = 1e6;
        let e = fit(&y, None, 1, 300, &o, Some(1)).unwrap_err();
        assert!(e.to_string().contains("diverged"), "{e}");
    }

    #[test]
    fn compress_keeps_weight_and_mean() {
        let y = [0.0, 1e-6, 2e-6, 1.0, 1.0 + 1e-7, 5.0];
        let (cy, cw) = compress(&y, None, 1e-5, false);
        assert_eq!((cy.clone(), cw.clone()), compress(&y, None, 1e-5, true));
        assert_eq!(cw, vec![3.0, 2.0, 1.0]);
        assert!((cy[0] - 1e-6).abs() < 1e-15);
    }
}
