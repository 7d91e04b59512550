//! Inverse CDF (`ppf`) and sampling.
//!
//! A table of `P` on a uniform grid gives each `q` a bracket `[x_j, x_{j+1}]` and a linear
//! start; safeguarded Newton (`P' = p`) then converges quadratically. A step that leaves the
//! bracket, or a zero density, falls back to false position (Illinois variant: the retained
//! end's residual is halved so it cannot stall at a bracket end, which plain bisection
//! fallbacks and plain regula falsi both do).
//!
//! `W` quantiles are solved in lock step so that the density/CDF evaluations use the
//! vectorised Horner kernel; lanes that have converged ride along until the block finishes.
//!
//! Performance notes (Zen 5, N = 32, 10⁶ samples, one thread, LTO): ~11 M samples/s with the
//! AVX2 Horner, ~12.7 M/s with the AVX-512 one (`avx512::cis_horner2`, bit-identical draws).
//! perf then showed `cis_horner2` at only ~18%, `InverseTable::start` ~33% (a call per lane,
//! not inlined) and the rest of `ppf_run` ~40% (per-sample `Stream::new`, scalar
//! `Lane::update` with branches). `#[inline(always)]` on `start` and `update`: ~15 M/s. Now
//! `cis_horner2` ~22%, the rest is spread over the scalar per-lane Newton bookkeeping (the
//! largest single stall waits on the `f/p` division); the next gain would be a branch-free,
//! vectorised start and update, not the Horner.

use super::eval::{check_rows, cis_block, CHUNK, W};
use super::model::{Channel, Domain, Model, C64};
use crate::error::{Error, Result};
use crate::rng::Stream;
use crate::{parallel, simd};

/// Largest number of samples per call.
pub const MAX_SAMPLES: usize = 1 << 31;
const MAX_ITER: usize = 100;
/// Newton steps shorter than this end the iteration (the step is still applied): with
/// quadratic convergence the remaining error is ~K·TOL² with K = |p'/2p|, far below 1 ulp.
const TOL: f64 = 1e-10;

/// `P` on a uniform grid of `[-1, 1]`, monotone by construction.
pub struct InverseTable {
    p: Vec<f64>,
    /// Density at the grid points, for the cubic Hermite start.
    d: Vec<f64>,
    step: f64,
    /// `guide[i]` = the cell holding quantile `i / len(guide)`: an O(1) start for the scan
    /// (a binary search over the table cost more than the Newton steps it feeds).
    guide: Vec<u32>,
}

impl InverseTable {
    pub fn new(ch: &Channel) -> Self {
        let g = (16 * (ch.degree() + 1)).clamp(256, 16384);
        let step = 2.0 / g as f64;
        let mut p = Vec::with_capacity(g + 1);
        let d: Vec<f64> = (0..=g)
            .map(|j| ch.density_x(-1.0 + j as f64 * step))
            .collect();
        let mut run = 0.0f64;
        for j in 0..=g {
            let v = if j == 0 {
                0.0
            } else if j == g {
                1.0
            } else {
                ch.cdf_x_raw(-1.0 + j as f64 * step).clamp(0.0, 1.0)
            };
            // Rounding can make P dip by ~1e-16 where p ≈ 0; keep the table monotone.
            run = run.max(v);
            p.push(run);
        }
        let mut guide = Vec::with_capacity(g);
        let mut j = 0usize;
        for i in 0..g {
            let q = i as f64 / g as f64;
            while j + 1 < g && p[j + 1] <= q {
                j += 1;
            }
            guide.push(j as u32);
        }
        InverseTable { p, d, step, guide }
    }

    /// Bracket and start for `q ∈ (0, 1)`: `(lo, hi, f_lo, f_hi, x0)` with `f = P − q`.
    #[inline(always)]
    fn start(&self, q: f64) -> (f64, f64, f64, f64, f64) {
        let g = self.p.len() - 1;
        let gi = ((q * self.guide.len() as f64) as usize).min(self.guide.len() - 1);
        let mut j = self.guide[gi] as usize;
        while j + 1 < g && self.p[j + 1] <= q {
            j += 1;
        }
        let (pl, ph) = (self.p[j], self.p[j + 1]);
        let lo = -1.0 + j as f64 * self.step;
        let hi = if j + 1 == g {
            1.0
        } else {
            -1.0 + (j + 1) as f64 * self.step
        };
        let dp = ph - pl;
        let t = if dp > 0.0 { (q - pl) / dp } else { 0.5 };
        let h = hi - lo;
        // Cubic Hermite of x(P) with slopes dx/dP = 1/p at the nodes: start error ~h⁴, so
        // one Newton step usually finishes. Where p varies a lot across the cell (near a
        // zero of p) the cubic may not be monotone: use the linear start there.
        let (m0, m1) = (dp / (self.d[j] * h), dp / (self.d[j + 1] * h));
        let x0 = if (0.25..=4.0).contains(&m0) && (0.25..=4.0).contains(&m1) {
            let t2 = t * t;
            let t3 = t2 * t;
            let h10 = t3 - 2.0 * t2 + t;
            let h01 = -2.0 * t3 + 3.0 * t2;
            let h11 = t3 - t2;
            let v = lo + h * (h01 + h10 * m0 + h11 * m1);
            v.clamp(lo, hi)
        } else {
            lo + t * h
        };
        (lo, hi, pl - q, ph - q, x0)
    }

    /// Scalar `ppf` in `x`-space (reference path and table building).
    pub fn ppf_x(&self, ch: &Channel, q: f64) -> f64 {
        if q.is_nan() {
            return f64::NAN;
        }
        if q <= 0.0 {
            return -1.0;
        }
        if q >= 1.0 {
            return 1.0;
        }
        let mut st = Lane::new(self.start(q));
        for _ in 0..MAX_ITER {
            if st.done {
                break;
            }
            let (p, cdf) = ch.density_and_cdf_x(st.x);
            st.update(p, cdf - q);
        }
        st.x
    }

    /// Scalar `ppf` in the model's coordinates.
    pub fn ppf_y(&self, ch: &Channel, domain: Domain, q: f64) -> f64 {
        to_y(ch, domain, self.ppf_x(ch, q))
    }
}

#[inline]
fn to_y(ch: &Channel, domain: Domain, x: f64) -> f64 {
    match domain {
        Domain::Interval => x,
        Domain::Real => ch.offset + ch.scale * x.atanh(),
    }
}

/// Safeguarded Newton state for one quantile.
#[derive(Clone, Copy)]
struct Lane {
    lo: f64,
    hi: f64,
    flo: f64,
    fhi: f64,
    x: f64,
    /// Which end was replaced last (−1 lo, +1 hi, 0 none) for the Illinois halving.
    side: i8,
    done: bool,
}

impl Lane {
    fn new((lo, hi, flo, fhi, x): (f64, f64, f64, f64, f64)) -> Self {
        Lane {
            lo,
            hi,
            flo,
            fhi,
            x,
            side: 0,
            done: false,
        }
    }

    /// One step given `p(x)` and `f = P(x) − q`.
    #[inline(always)]
    fn update(&mut self, p: f64, f: f64) {
        if f == 0.0 {
            self.done = true;
            return;
        }
        if f < 0.0 {
            self.lo = self.x;
            self.flo = f;
            if self.side == -1 {
                self.fhi *= 0.5;
            }
            self.side = -1;
        } else {
            self.hi = self.x;
            self.fhi = f;
            if self.side == 1 {
                self.flo *= 0.5;
            }
            self.side = 1;
        }
        let newton = self.x - f / p;
        let width = self.hi - self.lo;
        if p > 0.0 && newton >= self.lo && newton <= self.hi {
            // Only a Newton step may end the iteration: its error is quadratic in its length.
            if (newton - self.x).abs() <= TOL {
                self.done = true;
            }
            self.x = newton;
        } else {
            let fp = self.lo - self.flo * width / (self.fhi - self.flo);
            self.x = if fp > self.lo && fp < self.hi {
                fp
            } else {
                0.5 * (self.lo + self.hi)
            };
        }
        if width <= 4.0 * f64::EPSILON {
            self.done = true;
        }
    }
}

/// `(p, P)` for `W` points sharing one `sincos` and two interleaved Horner chains.
#[inline(always)]
fn pdf_cdf_lanes<const F: bool>(ch: &Channel, x: &[f64; W]) -> ([f64; W], [f64; W]) {
    // Sampling promises the same draws on every SIMD level, so the portable path performs
    // exactly the AVX2 kernel's operations: the same polynomials with *fused* multiply-adds
    // (`f64::mul_add`, a libm call where the CPU lacks FMA: slower, but bit-identical).
    let (a, b) = (&ch.a, &ch.b);
    let n = a.len() - 1;
    let portable = || {
        let (zr, zi) = if F {
            cis_block::<true>(x)
        } else {
            fused_cis(x)
        };
        let (gr, gi, hr, hi) = horner2_block::<F>(a, b, &zr, &zi);
        (zr, zi, gr, gi, hr, hi)
    };
    #[cfg(target_arch = "x86_64")]
    let (zr, zi, gr, gi, hr, hi) = if F && simd::level() == simd::Level::Avx512 {
        // SAFETY: `simd::level()` reports Avx512 only after detecting avx512f, avx2, fma.
        unsafe { super::avx512::cis_horner2(a, b, x) }
    } else {
        portable()
    };
    #[cfg(not(target_arch = "x86_64"))]
    let (zr, zi, gr, gi, hr, hi) = portable();
    let mut p = [0.0; W];
    let mut cdf = [0.0; W];
    for l in 0..W {
        p[l] = gr[l] * gr[l] + gi[l] * gi[l];
        let re = if n >= 1 {
            hr[l] * zr[l] - hi[l] * zi[l]
        } else {
            0.0
        };
        cdf[l] = 0.5 * (x[l] + 1.0) + re - ch.b_at_minus1;
    }
    (p, cdf)
}

/// `z = e^{iπx}` per lane with the fused-multiply-add polynomial of the AVX2 kernel.
#[inline(always)]
fn fused_cis(x: &[f64; W]) -> ([f64; W], [f64; W]) {
    let mut zr = [0.0; W];
    let mut zi = [0.0; W];
    for l in 0..W {
        let (s, c) = super::eval::sincospi::<true>(x[l]);
        zr[l] = c;
        zi[l] = s;
    }
    (zr, zi)
}

/// `Σ a_k z^k` and `Σ_j b_j z^j` (`b` one shorter) in one pass.
#[inline(always)]
#[allow(clippy::type_complexity)]
fn horner2_block<const F: bool>(
    a: &[C64],
    b: &[C64],
    zr: &[f64; W],
    zi: &[f64; W],
) -> ([f64; W], [f64; W], [f64; W], [f64; W]) {
    #[cfg(target_arch = "x86_64")]
    if F {
        // SAFETY: F = true is instantiated only inside `avx2,fma` functions, called only
        // after `simd::level()` detected those features.
        return unsafe { super::avx2::horner2(a, b, zr, zi) };
    }
    let n = a.len() - 1;
    let mut gr = [a[n].re; W];
    let mut gi = [a[n].im; W];
    let hb = if n >= 1 { b[n - 1] } else { C64::default() };
    let mut hr = [hb.re; W];
    let mut hi = [hb.im; W];
    for k in (0..n).rev() {
        let ak = a[k];
        for l in 0..W {
            let r = mul_add::<F>(gr[l], zr[l], mul_add::<F>(-gi[l], zi[l], ak.re));
            let i = mul_add::<F>(gr[l], zi[l], mul_add::<F>(gi[l], zr[l], ak.im));
            gr[l] = r;
            gi[l] = i;
        }
        if k >= 1 {
            let bk = b[k - 1];
            for l in 0..W {
                let r = mul_add::<F>(hr[l], zr[l], mul_add::<F>(-hi[l], zi[l], bk.re));
                let i = mul_add::<F>(hr[l], zi[l], mul_add::<F>(hi[l], zr[l], bk.im));
                hr[l] = r;
                hi[l] = i;
            }
        }
    }
    (gr, gi, hr, hi)
}

#[inline(always)]
fn mul_add<const F: bool>(a: f64, b: f64, c: f64) -> f64 {
    // Fused on every level (see `pdf_cdf_lanes`): draws must not depend on the SIMD level.
    a.mul_add(b, c)
}

/// Solves `W` quantiles in lock step; `q` must lie strictly inside (0, 1) (callers handle the
/// ends and NaN).
#[inline(always)]
fn solve_lanes<const F: bool>(ch: &Channel, table: &InverseTable, q: &[f64; W]) -> [f64; W] {
    let mut lanes = [Lane::new((0.0, 0.0, 0.0, 0.0, 0.0)); W];
    for l in 0..W {
        lanes[l] = Lane::new(table.start(q[l]));
    }
    for _ in 0..MAX_ITER {
        let mut x = [0.0; W];
        for l in 0..W {
            x[l] = lanes[l].x;
        }
        let (p, cdf) = pdf_cdf_lanes::<F>(ch, &x);
        let mut all = true;
        for l in 0..W {
            if !lanes[l].done {
                lanes[l].update(p[l], cdf[l] - q[l]);
                all &= lanes[l].done;
            }
        }
        if all {
            break;
        }
    }
    let mut out = [0.0; W];
    for l in 0..W {
        out[l] = lanes[l].x;
    }
    out
}

/// Largest `f64` below 1.
const ONE_BELOW: f64 = 1.0 - f64::EPSILON / 2.0;

/// `ppf` for a run of quantiles (any values; ends and NaN are mapped directly). With `open`
/// (sampling) the solution is kept inside `(-1, 1)`, so real-line samples are always finite:
/// `Stream::next_f64_open` returns exactly 1.0 once in 2^53 draws (`(2^53 − 1) + 0.5` rounds
/// to `2^53`, ties to even), and its smallest draws (~5.6e-17) can solve to `x = −1` where
/// `p(−1) > 1/2` because `x` has no finer resolution there; either would be `∓inf` after
/// `atanh`. Clamping moves only those draws, to the last representable `x`.
#[inline(always)]
fn ppf_run<const F: bool>(
    ch: &Channel,
    domain: Domain,
    table: &InverseTable,
    q: impl Fn(usize) -> f64,
    out: &mut [f64],
    open: bool,
) {
    let n = out.len();
    let mut i = 0;
    while i < n {
        let take = (n - i).min(W);
        let mut raw = [0.5; W];
        let mut qb = [0.5; W];
        for l in 0..take {
            let v = q(i + l);
            raw[l] = v;
            qb[l] = if v > 0.0 && v < 1.0 { v } else { 0.5 };
        }
        let xb = solve_lanes::<F>(ch, table, &qb);
        for l in 0..take {
            let v = raw[l];
            let x = if v.is_nan() {
                f64::NAN
            } else if v <= 0.0 {
                -1.0
            } else if v >= 1.0 {
                1.0
            } else {
                xb[l]
            };
            let x = if open {
                x.clamp(-ONE_BELOW, ONE_BELOW)
            } else {
                x
            };
            out[i + l] = to_y(ch, domain, x);
        }
        i += take;
    }
}

fn ppf_scalar(ch: &Channel, d: Domain, t: &InverseTable, q: &[f64], out: &mut [f64]) {
    ppf_run::<false>(ch, d, t, |i| q[i], out, false)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn ppf_avx2(ch: &Channel, d: Domain, t: &InverseTable, q: &[f64], out: &mut [f64]) {
    ppf_run::<true>(ch, d, t, |i| q[i], out, false)
}

fn rvs_scalar(ch: &Channel, d: Domain, t: &InverseTable, seed: u64, base: u64, out: &mut [f64]) {
    ppf_run::<false>(
        ch,
        d,
        t,
        |i| Stream::new(seed, base + i as u64).next_f64_open(),
        out,
        true,
    )
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rvs_avx2(
    ch: &Channel,
    d: Domain,
    t: &InverseTable,
    seed: u64,
    base: u64,
    out: &mut [f64],
) {
    ppf_run::<true>(
        ch,
        d,
        t,
        |i| Stream::new(seed, base + i as u64).next_f64_open(),
        out,
        true,
    )
}

fn use_avx2() -> bool {
    cfg!(target_arch = "x86_64") && matches!(simd::level(), simd::Level::Avx2 | simd::Level::Avx512)
}

fn ppf_row(ch: &Channel, d: Domain, t: &InverseTable, q: &[f64], out: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: avx2 and fma were detected at run time (`simd::level`).
        unsafe { ppf_avx2(ch, d, t, q, out) };
        return;
    }
    ppf_scalar(ch, d, t, q, out)
}

fn rvs_row(ch: &Channel, d: Domain, t: &InverseTable, seed: u64, base: u64, out: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if use_avx2() {
        // SAFETY: avx2 and fma were detected at run time (`simd::level`).
        unsafe { rvs_avx2(ch, d, t, seed, base, out) };
        return;
    }
    rvs_scalar(ch, d, t, seed, base, out)
}

/// `ppf` for every channel; `q` laid out like [`super::eval::evaluate`]'s points. Quantiles
/// outside `[0, 1]` are rejected.
pub fn ppf(
    model: &Model,
    q: &[f64],
    rows: usize,
    m: usize,
    num_threads: Option<usize>,
) -> Result<Vec<f64>> {
    let c = model.n_channels();
    check_rows(c, q.len(), rows, m)?;
    if let Some(i) = q.iter().position(|v| *v < 0.0 || *v > 1.0) {
        return Err(Error::invalid(format!(
            "quantiles must lie in [0, 1]; got {} at flat index {i}",
            q[i]
        )));
    }
    let mut out = vec![0.0; c * m];
    if m == 0 {
        return Ok(out);
    }
    let tasks = c * m.div_ceil(CHUNK / 4);
    let d = model.domain;
    parallel::run(num_threads, tasks, |par| {
        parallel::for_each_chunk(par, &mut out, m, |ci, row| {
            let ch = &model.channels[ci];
            let table = InverseTable::new(ch);
            let qr = if rows == 1 {
                &q[..m]
            } else {
                &q[ci * m..(ci + 1) * m]
            };
            parallel::for_each_chunk(par, row, CHUNK / 4, |k, o| {
                let qs = &qr[k * (CHUNK / 4)..k * (CHUNK / 4) + o.len()];
                ppf_row(ch, d, &table, qs, o)
            });
        });
    })?;
    Ok(out)
}

/// `size` samples per channel; sample `i` of channel `c` draws from stream
/// `(seed, c·size + i)`, so the values do not depend on threads or chunking.
pub fn rvs(model: &Model, size: usize, seed: u64, num_threads: Option<usize>) -> Result<Vec<f64>> {
    let c = model.n_channels();
    if size.checked_mul(c).is_none_or(|t| t > MAX_SAMPLES) {
        return Err(Error::Limit(format!(
            "{size} samples × {c} channels exceed the limit of 2**31"
        )));
    }
    let mut out = vec![0.0; c * size];
    if size == 0 {
        return Ok(out);
    }
    let tasks = c * size.div_ceil(CHUNK / 4);
    let d = model.domain;
    parallel::run(num_threads, tasks, |par| {
        parallel::for_each_chunk(par, &mut out, size, |ci, row| {
            let ch = &model.channels[ci];
            let table = InverseTable::new(ch);
            parallel::for_each_chunk(par, row, CHUNK / 4, |k, o| {
                let base = (ci * size + k * (CHUNK / 4)) as u64;
                rvs_row(ch, d, &table, seed, base, o)
            });
        });
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(domain: Domain, n: usize, seed: u64) -> Model {
        let mut s = Stream::new(seed, 0);
        let coeffs: Vec<C64> = (0..=n).map(|_| C64::new(s.normal(), s.normal())).collect();
        let (sc, off) = match domain {
            Domain::Interval => (1.0, 0.0),
            Domain::Real => (0.7, 1.5),
        };
        Model::new(domain, 1, &coeffs, &[sc], &[off]).unwrap()
    }

    #[test]
    fn ppf_inverts_cdf() {
        for n in [0usize, 1, 3, 16, 64] {
            let m = model(Domain::Interval, n, n as u64 + 10);
            let ch = &m.channels[0];
            let xs: Vec<f64> = (1..400).map(|i| -1.0 + i as f64 / 200.0).collect();
            let q: Vec<f64> = xs
                .iter()
                .map(|&x| ch.cdf_x_raw(x).clamp(0.0, 1.0))
                .collect();
            let back = ppf(&m, &q, 1, q.len(), Some(1)).unwrap();
            for (i, &x) in xs.iter().enumerate() {
                let p = ch.density_x(x);
                if p > 1e-3 {
                    assert!((back[i] - x).abs() < 1e-11, "n={n} x={x} got {}", back[i]);
                }
            }
        }
    }

    #[test]
    fn ends_and_validation() {
        let m = model(Domain::Real, 5, 1);
        let v = ppf(&m, &[0.0, 1.0, f64::NAN], 1, 3, None).unwrap();
        assert_eq!(v[0], f64::NEG_INFINITY);
        assert_eq!(v[1], f64::INFINITY);
        assert!(v[2].is_nan());
        assert!(ppf(&m, &[1.5], 1, 1, None).is_err());
        assert!(ppf(&m, &[-0.1], 1, 1, None).is_err());
    }

    #[test]
    fn sampling_keeps_extreme_draws_finite() {
        // The rounding that lets `next_f64_open` return exactly 1.0 (top 53 bits all ones).
        let top = ((1u64 << 53) - 1) as f64;
        assert_eq!((top + 0.5) * (1.0 / (1u64 << 53) as f64), 1.0);
        // p(1) = 0.9, p(-1) = 0.1 and the reverse: both ends are reachable.
        for a1 in [0.5, -0.5] {
            let m = Model::new(
                Domain::Real,
                1,
                &[C64::new(1.0, 0.0), C64::new(a1, 0.0)],
                &[1.0],
                &[0.0],
            )
            .unwrap();
            let ch = &m.channels[0];
            let t = InverseTable::new(ch);
            let q = [1.0, ONE_BELOW, 2f64.powi(-54), 0.5];
            let mut out = [0.0; 4];
            ppf_run::<false>(ch, Domain::Real, &t, |i| q[i], &mut out, true);
            assert!(out.iter().all(|v| v.is_finite()), "{a1}: {out:?}");
            // ppf itself keeps its contract: q = 1 is +inf.
            ppf_run::<false>(ch, Domain::Real, &t, |i| q[i], &mut out, false);
            assert_eq!(out[0], f64::INFINITY);
        }
    }

    #[test]
    fn rvs_reproducible_across_threads_and_levels() {
        let m = model(Domain::Real, 8, 2);
        let a = rvs(&m, 20_000, 7, Some(1)).unwrap();
        let b = rvs(&m, 20_000, 7, Some(2)).unwrap();
        assert_eq!(a, b);
        let ch = &m.channels[0];
        let table = InverseTable::new(ch);
        let mut s = vec![0.0; 100];
        rvs_scalar(ch, Domain::Real, &table, 7, 0, &mut s);
        for i in 0..100 {
            assert!((s[i] - a[i]).abs() < 1e-9 * (1.0 + a[i].abs()));
        }
        // Same draws on every level, bit for bit (the portable path fuses like the kernels).
        let mi = model(Domain::Interval, 32, 4);
        let chi = &mi.channels[0];
        let ti = InverseTable::new(chi);
        let mut sc = vec![0.0; 1000];
        rvs_scalar(chi, Domain::Interval, &ti, 9, 0, &mut sc);
        let vec = rvs(&mi, 1000, 9, Some(1)).unwrap();
        assert_eq!(sc, vec);
    }
}
