//! `pdf`, `logpdf` and `cdf` over batches of points.
//!
//! Per point: one `sincos(πx)` (our own polynomial, so it vectorises), then Horner on the
//! complex polynomial — `N` complex FMAs — and `p = |g|²`, exactly non-negative. The CDF runs
//! Horner on `b_n = c_n / (iπn)`. Clenshaw on the real cosine series would halve the flops but
//! loses ~1e-4 relative accuracy at N = 256 in f32 (spec), so it is not used.
//!
//! Performance notes: the generic kernels work on blocks of `W = 16` points held in plain
//! arrays; the same code is compiled twice, once plain (scalar fallback) and once inside an
//! `avx2,fma` function that calls the hand-written 4-wide kernels of `avx2.rs` (4 vectors = 4
//! independent FMA chains per Horner step). On AVX-512 CPUs both domains go to `avx512.rs`
//! (whole block in zmm registers, vector `ln`, and for the real line a vector
//! `exp`/`expm1` giving `tanh`, `sech²` and `log sech²`).
//!
//! Measured on Zen 5 (EPYC, 512-bit FMA), N = 32, 10⁶ points, one thread (truly one since
//! 1f394dd), LTO wheel, CPU time, numpy complex Horner = 10–12 M points/s side by side:
//! - AVX2 path: pdf ~97 M/s (9.5×), logpdf ~36 M/s (3.5×: scalar libm `ln` per lane costs as
//!   much as the Horner), cdf ~138 M/s (14.5×).
//! - AVX-512 path, NV = 4 zmm per block: pdf ~304 M/s, logpdf ~249, cdf ~307.
//!   NV = 6: pdf ~336, logpdf ~266, cdf ~340 (≈ 30×). NV = 8: no better than 6.
//! - What is left at N = 32 (~3.0 ms per 10⁶): Horner ~2.1 ms — the slope over N is 0.069
//!   ns per point per coefficient, i.e. the 2 × 8-lane FMA pipes at full rate (4 FMAs per
//!   complex step), so only fewer FMAs would help; the rest (~0.9 ms, measured at N = 1) is
//!   `sincospi`, the 8 MB output allocation (page faults) and the Python call.
//! - Real domain (scale 1.5, y ~ N(0, 4)): AVX2 path pdf 33 ms / logpdf 41 / cdf 25 per 10⁶
//!   (scalar libm `tanh`, `exp`, `ln_1p` per point dominate); AVX-512 path 6.4 / 8.0 / 6.0.
//! - Clenshaw / Goertzel on the real cosine series would need half the FMAs but loses
//!   accuracy near x = 0, ±1 (spec: ~1e-4 relative at N = 256 in f32), so it is not used.
//! - Two threads (10⁶ points, ~3 ms calls) give 1.6–2.0× depending on the VM's mood; perf
//!   shows calloc's serial memset of the 8 MB output at ~4 %. Tried: an uninitialised output
//!   zeroed chunk by chunk on the worker threads. A/B in one session (min of 60 interleaved
//!   calls): 2 threads unchanged (1.65 vs 1.68 ms), 1 thread 2 % slower (3.02 vs 2.96 ms) —
//!   reverted.

use std::f64::consts::PI;

use super::model::{log_sech2, sech2, Channel, Domain, Model, C64};
use crate::error::{Error, Result};
use crate::{parallel, simd};

pub(crate) const W: usize = 16;
/// Points per parallel task; smaller batches stay on the calling thread.
pub(crate) const CHUNK: usize = 8192;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Pdf,
    LogPdf,
    Cdf,
}

const PDF: u8 = 0;
const LOGPDF: u8 = 1;
const CDF: u8 = 2;

#[inline(always)]
fn fma<const F: bool>(a: f64, b: f64, c: f64) -> f64 {
    if F {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

// Taylor coefficients of sin t / t and cos t in t², enough for |t| ≤ π/4 to < 1e-16.
pub(crate) const S1: f64 = -1.0 / 6.0;
pub(crate) const S2: f64 = 1.0 / 120.0;
pub(crate) const S3: f64 = -1.0 / 5040.0;
pub(crate) const S4: f64 = 1.0 / 362_880.0;
pub(crate) const S5: f64 = -1.0 / 39_916_800.0;
pub(crate) const S6: f64 = 1.0 / 6_227_020_800.0;
pub(crate) const S7: f64 = -1.0 / 1_307_674_368_000.0;
pub(crate) const C1: f64 = -0.5;
pub(crate) const C2: f64 = 1.0 / 24.0;
pub(crate) const C3: f64 = -1.0 / 720.0;
pub(crate) const C4: f64 = 1.0 / 40_320.0;
pub(crate) const C5: f64 = -1.0 / 3_628_800.0;
pub(crate) const C6: f64 = 1.0 / 479_001_600.0;
pub(crate) const C7: f64 = -1.0 / 87_178_291_200.0;
pub(crate) const C8: f64 = 1.0 / 20_922_789_888_000.0;

/// `(sin πx, cos πx)`, branch-free so that lane loops vectorise. Accurate to a few ulp for
/// |x| < 2^50 (the reduction `x - k/2` is exact).
#[inline(always)]
pub(crate) fn sincospi<const F: bool>(x: f64) -> (f64, f64) {
    let k = (2.0 * x).round_ties_even();
    let r = x - 0.5 * k;
    let t = PI * r;
    let t2 = t * t;
    let ps = fma::<F>(
        fma::<F>(
            fma::<F>(
                fma::<F>(fma::<F>(fma::<F>(S7, t2, S6), t2, S5), t2, S4),
                t2,
                S3,
            ),
            t2,
            S2,
        ),
        t2,
        S1,
    );
    let s = fma::<F>(t * t2, ps, t);
    let pc = fma::<F>(
        fma::<F>(
            fma::<F>(
                fma::<F>(
                    fma::<F>(fma::<F>(fma::<F>(C8, t2, C7), t2, C6), t2, C5),
                    t2,
                    C4,
                ),
                t2,
                C3,
            ),
            t2,
            C2,
        ),
        t2,
        C1,
    );
    let c = fma::<F>(t2, pc, 1.0);
    // Quadrant q = k mod 4: πx = qπ/2 + πr.
    let q = k - 4.0 * (0.25 * k).floor();
    let odd = q == 1.0 || q == 3.0;
    let (s1, c1) = if odd { (c, s) } else { (s, c) };
    let sin = if q >= 2.0 { -s1 } else { s1 };
    let cos = if q == 1.0 || q == 2.0 { -c1 } else { c1 };
    (sin, cos)
}

/// Horner over `W` lanes: returns `(Re, Im)` of `Σ coef_k z^k`.
#[inline(always)]
fn horner_lanes<const F: bool>(coef: &[C64], zr: &[f64; W], zi: &[f64; W]) -> ([f64; W], [f64; W]) {
    let last = coef[coef.len() - 1];
    let mut gr = [last.re; W];
    let mut gi = [last.im; W];
    for ak in coef[..coef.len() - 1].iter().rev() {
        for l in 0..W {
            let r = fma::<F>(gr[l], zr[l], fma::<F>(-gi[l], zi[l], ak.re));
            let i = fma::<F>(gr[l], zi[l], fma::<F>(gi[l], zr[l], ak.im));
            gr[l] = r;
            gi[l] = i;
        }
    }
    (gr, gi)
}

/// `z = e^{iπx}` for a block: `(Re z, Im z)`.
#[inline(always)]
pub(crate) fn cis_block<const F: bool>(x: &[f64; W]) -> ([f64; W], [f64; W]) {
    #[cfg(target_arch = "x86_64")]
    if F {
        // SAFETY: F = true is instantiated only inside `avx2,fma` functions, which are
        // called only after `simd::level()` detected those features.
        let (s, c) = unsafe { super::avx2::sincospi(x) };
        return (c, s);
    }
    let mut zr = [0.0; W];
    let mut zi = [0.0; W];
    for l in 0..W {
        let (s, c) = sincospi::<F>(x[l]);
        zr[l] = c;
        zi[l] = s;
    }
    (zr, zi)
}

/// Horner for a block, explicit AVX2 when `F`.
#[inline(always)]
pub(crate) fn horner_block<const F: bool>(
    coef: &[C64],
    zr: &[f64; W],
    zi: &[f64; W],
) -> ([f64; W], [f64; W]) {
    #[cfg(target_arch = "x86_64")]
    if F {
        // SAFETY: as in `cis_block`.
        return unsafe { super::avx2::horner(coef, zr, zi) };
    }
    horner_lanes::<F>(coef, zr, zi)
}

/// Density-space kernel on `x ∈ [-1, 1]` for one block. `MODE` picks pdf / logpdf / cdf.
#[inline(always)]
fn block_x<const F: bool, const MODE: u8>(ch: &Channel, x: &[f64; W], out: &mut [f64; W]) {
    let (zr, zi) = cis_block::<F>(x);
    if MODE == CDF {
        if ch.b.is_empty() {
            for l in 0..W {
                out[l] = (0.5 * (x[l] + 1.0)).clamp(0.0, 1.0);
            }
            return;
        }
        let (hr, hi) = horner_block::<F>(&ch.b, &zr, &zi);
        for l in 0..W {
            // Re(z·H(z)) + (x+1)/2 - Re S(-1)
            let re = hr[l] * zr[l] - hi[l] * zi[l];
            let v = 0.5 * (x[l] + 1.0) + re - ch.b_at_minus1;
            let v = if x[l] <= -1.0 {
                0.0
            } else if x[l] >= 1.0 {
                1.0
            } else {
                v
            };
            // Rounding can leave |v| ~ 1e-16 outside [0, 1]; NaN passes through.
            out[l] = v.clamp(0.0, 1.0);
        }
    } else {
        let (gr, gi) = horner_block::<F>(&ch.a, &zr, &zi);
        for l in 0..W {
            let p = gr[l] * gr[l] + gi[l] * gi[l];
            let outside = x[l] < -1.0 || x[l] > 1.0;
            out[l] = if MODE == PDF {
                if outside {
                    0.0
                } else {
                    p
                }
            } else if outside {
                f64::NEG_INFINITY
            } else {
                p.ln()
            };
        }
    }
}

/// Real-line kernel: maps `y` to `x = tanh(z)` and applies the Jacobian in log space.
#[inline(always)]
fn block_y<const F: bool, const MODE: u8>(ch: &Channel, y: &[f64; W], out: &mut [f64; W]) {
    let inv_s = 1.0 / ch.scale;
    let mut x = [0.0; W];
    let mut z = [0.0; W];
    for l in 0..W {
        z[l] = (y[l] - ch.offset) * inv_s;
        x[l] = z[l].tanh();
    }
    if MODE == CDF {
        block_x::<F, CDF>(ch, &x, out);
        return;
    }
    let mut p = [0.0; W];
    block_x::<F, PDF>(ch, &x, &mut p);
    if MODE == PDF {
        for l in 0..W {
            out[l] = p[l] * sech2(z[l]) * inv_s;
        }
    } else {
        let log_s = ch.scale.ln();
        for l in 0..W {
            out[l] = p[l].ln() + log_sech2(z[l]) - log_s;
        }
    }
}

#[inline(always)]
fn row_impl<const F: bool, const MODE: u8>(
    ch: &Channel,
    domain: Domain,
    x: &[f64],
    out: &mut [f64],
) {
    let mut xs = x.chunks_exact(W);
    let mut os = out.chunks_exact_mut(W);
    for (xb, ob) in (&mut xs).zip(&mut os) {
        let xb: &[f64; W] = xb.try_into().expect("chunk of W");
        let ob: &mut [f64; W] = ob.try_into().expect("chunk of W");
        match domain {
            Domain::Interval => block_x::<F, MODE>(ch, xb, ob),
            Domain::Real => block_y::<F, MODE>(ch, xb, ob),
        }
    }
    let rest = xs.remainder();
    if !rest.is_empty() {
        let mut xb = [0.0; W];
        let mut ob = [0.0; W];
        xb[..rest.len()].copy_from_slice(rest);
        match domain {
            Domain::Interval => block_x::<F, MODE>(ch, &xb, &mut ob),
            Domain::Real => block_y::<F, MODE>(ch, &xb, &mut ob),
        }
        let n = rest.len();
        os.into_remainder().copy_from_slice(&ob[..n]);
    }
}

fn row_scalar(ch: &Channel, domain: Domain, kind: Kind, x: &[f64], out: &mut [f64]) {
    match kind {
        Kind::Pdf => row_impl::<false, PDF>(ch, domain, x, out),
        Kind::LogPdf => row_impl::<false, LOGPDF>(ch, domain, x, out),
        Kind::Cdf => row_impl::<false, CDF>(ch, domain, x, out),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn row_avx2(ch: &Channel, domain: Domain, kind: Kind, x: &[f64], out: &mut [f64]) {
    match kind {
        Kind::Pdf => row_impl::<true, PDF>(ch, domain, x, out),
        Kind::LogPdf => row_impl::<true, LOGPDF>(ch, domain, x, out),
        Kind::Cdf => row_impl::<true, CDF>(ch, domain, x, out),
    }
}

fn kind_code(kind: Kind) -> u8 {
    match kind {
        Kind::Pdf => PDF,
        Kind::LogPdf => LOGPDF,
        Kind::Cdf => CDF,
    }
}

/// One channel over a slice of points, on the best SIMD level available.
pub fn eval_row(ch: &Channel, domain: Domain, kind: Kind, x: &[f64], out: &mut [f64]) {
    debug_assert_eq!(x.len(), out.len());
    match simd::level() {
        #[cfg(target_arch = "x86_64")]
        simd::Level::Avx512 => {
            let real = domain == Domain::Real;
            // SAFETY: `simd::level()` reports Avx512 only after run-time detection of
            // avx512f, avx2 and fma on this CPU.
            unsafe { super::avx512::row(ch, real, kind_code(kind), x, out) }
        }
        #[cfg(target_arch = "x86_64")]
        simd::Level::Avx2 => {
            // SAFETY: `simd::level()` reports Avx2 only after run-time detection of avx2 and
            // fma on this CPU.
            unsafe { row_avx2(ch, domain, kind, x, out) }
        }
        _ => row_scalar(ch, domain, kind, x, out),
    }
    // A degree-0 density is a constant: its Horner sum never touches `z = e^{iπx}`, so a NaN
    // point would silently get the uniform density (found by hypothesis). Propagate it.
    if ch.degree() == 0 {
        for (o, &xi) in out.iter_mut().zip(x) {
            if xi.is_nan() {
                *o = f64::NAN;
            }
        }
    }
}

/// Evaluates `kind` for every channel at its points.
///
/// `x` holds `x_rows` rows of `m` points, row-major: `x_rows == C` gives each channel its own
/// points; `x_rows == 1` shares one row across channels. Returns `C × m` values.
pub fn evaluate(
    model: &Model,
    kind: Kind,
    x: &[f64],
    x_rows: usize,
    m: usize,
    num_threads: Option<usize>,
) -> Result<Vec<f64>> {
    let c = model.n_channels();
    check_rows(c, x.len(), x_rows, m)?;
    let mut out = vec![0.0; c * m];
    if m == 0 {
        return Ok(out);
    }
    let tasks = c * m.div_ceil(CHUNK);
    let domain = model.domain;
    parallel::run(num_threads, tasks, |par| {
        parallel::for_each_chunk(par, &mut out, m, |ci, row| {
            let xr = if x_rows == 1 {
                &x[..m]
            } else {
                &x[ci * m..(ci + 1) * m]
            };
            let ch = &model.channels[ci];
            parallel::for_each_chunk(par, row, CHUNK, |k, o| {
                let xi = &xr[k * CHUNK..k * CHUNK + o.len()];
                eval_row(ch, domain, kind, xi, o)
            });
        });
    })?;
    Ok(out)
}

pub(crate) fn check_rows(c: usize, len: usize, x_rows: usize, m: usize) -> Result<()> {
    if x_rows != 1 && x_rows != c {
        return Err(Error::invalid(format!(
            "points have {x_rows} rows; expected 1 (shared) or one per channel ({c})"
        )));
    }
    if x_rows.checked_mul(m) != Some(len) {
        return Err(Error::Internal(format!(
            "point buffer of length {len} does not hold {x_rows} rows of {m}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Stream;

    fn model(domain: Domain, n: usize, seed: u64) -> Model {
        let mut s = Stream::new(seed, 0);
        let coeffs: Vec<C64> = (0..=n).map(|_| C64::new(s.normal(), s.normal())).collect();
        let (sc, off) = match domain {
            Domain::Interval => (1.0, 0.0),
            Domain::Real => (1.7, -0.3),
        };
        Model::new(domain, 1, &coeffs, &[sc], &[off]).unwrap()
    }

    #[test]
    fn sincospi_accuracy() {
        let mut worst: f64 = 0.0;
        for i in -20000..=20000 {
            let x = i as f64 / 10000.0 + 1e-7;
            let (s, c) = sincospi::<false>(x);
            worst = worst
                .max((s - (PI * x).sin()).abs())
                .max((c - (PI * x).cos()).abs());
        }
        // The libm reference rounds πx first (~4e-16 at |x| = 2); ours reduces exactly.
        assert!(worst < 1.5e-15, "{worst}");
        let (s, c) = sincospi::<true>(0.5);
        assert_eq!((s, c), (1.0, 0.0));
    }

    #[test]
    fn kernels_match_scalar_reference_all_levels() {
        for domain in [Domain::Interval, Domain::Real] {
            for n in [0usize, 1, 5, 32, 200] {
                let m = model(domain, n, n as u64);
                let ch = &m.channels[0];
                let xs: Vec<f64> = (0..203)
                    .map(|i| match domain {
                        Domain::Interval => -1.0 + 2.0 * i as f64 / 202.0,
                        Domain::Real => -30.0 + 60.0 * i as f64 / 202.0,
                    })
                    .collect();
                for kind in [Kind::Pdf, Kind::LogPdf, Kind::Cdf] {
                    let mut a = vec![0.0; xs.len()];
                    let mut b = vec![0.0; xs.len()];
                    row_scalar(ch, domain, kind, &xs, &mut a);
                    eval_row(ch, domain, kind, &xs, &mut b);
                    for (i, &x) in xs.iter().enumerate() {
                        let (xx, jac) = match domain {
                            Domain::Interval => (x, 0.0),
                            Domain::Real => {
                                let z = (x - ch.offset) / ch.scale;
                                (z.tanh(), log_sech2(z) - ch.scale.ln())
                            }
                        };
                        let want = match kind {
                            Kind::Pdf => ch.density_x(xx) * jac.exp(),
                            Kind::LogPdf => ch.density_x(xx).ln() + jac,
                            Kind::Cdf => ch.cdf_x_raw(xx).clamp(0.0, 1.0),
                        };
                        let tol = 1e-13 * (1.0 + want.abs()) * (n as f64 + 1.0);
                        assert!(
                            (a[i] - want).abs() <= tol,
                            "{kind:?} {n} {x}: {} {want}",
                            a[i]
                        );
                        assert!(
                            (b[i] - want).abs() <= tol,
                            "{kind:?} {n} {x}: {} {want}",
                            b[i]
                        );
                    }
                }
            }
        }
    }

    /// Every x86 level against the scalar path on both domains, called directly (not through
    /// `simd::level()`, so the comparison also runs under `PROBCRAFT_SIMD` caps): lengths that
    /// leave every remainder modulo the block sizes, and special points.
    #[test]
    fn levels_agree_with_scalar() {
        #[cfg(target_arch = "x86_64")]
        {
            let has_avx2 = std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma");
            let has_avx512 = has_avx2 && std::arch::is_x86_feature_detected!("avx512f");
            let special = [
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                -1.0,
                1.0,
                0.0,
                -0.0,
                1e-300,
                0.5,
                -0.75,
                1.0 + 1e-16,
                -1.0 - 2e-16,
                1e6 + 0.25,
                -700.0,
                19.0,
                1e-8,
                f64::MAX,
            ];
            for (domain, n) in [0usize, 1, 2, 7, 32, 256]
                .into_iter()
                .flat_map(|n| [(Domain::Interval, n), (Domain::Real, n)])
            {
                let m = model(domain, n, 11 + n as u64);
                let real = domain == Domain::Real;
                let ch = &m.channels[0];
                for len in [0usize, 1, 7, 8, 15, 16, 17, 47, 48, 49, 97, 130] {
                    let xs: Vec<f64> = (0..len)
                        .map(|i| {
                            if i % 3 == 0 {
                                special[(i / 3) % special.len()]
                            } else {
                                let u = ((i * 37) % 101) as f64 / 100.0;
                                if real {
                                    // Tails included: z = (y + 0.3)/1.7 up to ±60.
                                    -100.0 + 200.0 * u * u
                                } else {
                                    -1.2 + 2.4 * u
                                }
                            }
                        })
                        .collect();
                    for (kind, code) in [(Kind::Pdf, PDF), (Kind::LogPdf, LOGPDF), (Kind::Cdf, CDF)]
                    {
                        let mut want = vec![0.0; len];
                        row_scalar(ch, domain, kind, &xs, &mut want);
                        let mut got = Vec::new();
                        if has_avx2 {
                            let mut o = vec![0.0; len];
                            // SAFETY: avx2 and fma detected above.
                            unsafe { row_avx2(ch, domain, kind, &xs, &mut o) };
                            got.push(("avx2", o));
                        }
                        if has_avx512 {
                            let mut o = vec![0.0; len];
                            // SAFETY: avx512f, avx2 and fma detected above.
                            unsafe { super::super::avx512::row(ch, real, code, &xs, &mut o) };
                            got.push(("avx512", o));
                        }
                        for (name, o) in &got {
                            for i in 0..len {
                                let (a, b) = (want[i], o[i]);
                                let ok = (a.is_nan() && b.is_nan())
                                    || a == b
                                    || (a - b).abs() <= 1e-13 * a.abs().max(1.0) * (n as f64 + 1.0);
                                assert!(
                                    ok,
                                    "{name} {domain:?} {kind:?} n={n} x={}: {b} vs scalar {a}",
                                    xs[i]
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn outside_support_and_nan() {
        let m = model(Domain::Interval, 4, 1);
        let x = [-1.5, 1.5, f64::NAN, -1.0, 1.0];
        let pdf = evaluate(&m, Kind::Pdf, &x, 1, 5, Some(1)).unwrap();
        assert_eq!(&pdf[..2], &[0.0, 0.0]);
        assert!(pdf[2].is_nan());
        let cdf = evaluate(&m, Kind::Cdf, &x, 1, 5, Some(1)).unwrap();
        assert_eq!(&cdf[..2], &[0.0, 1.0]);
        assert!(cdf[2].is_nan());
        assert_eq!(cdf[3], 0.0);
        assert_eq!(cdf[4], 1.0);
        let lp = evaluate(&m, Kind::LogPdf, &x, 1, 5, Some(1)).unwrap();
        assert_eq!(lp[0], f64::NEG_INFINITY);
    }

    #[test]
    fn threads_do_not_change_results() {
        let m = model(Domain::Real, 16, 3);
        let n = 3 * CHUNK + 17;
        let x: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin() * 5.0).collect();
        let a = evaluate(&m, Kind::LogPdf, &x, 1, n, Some(1)).unwrap();
        let b = evaluate(&m, Kind::LogPdf, &x, 1, n, Some(2)).unwrap();
        assert_eq!(a, b);
    }
}
