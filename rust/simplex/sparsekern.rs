//! Row kernels of the sparse maps (sparsemax, entmax-1.5, α-entmax), with AVX-512 versions.
//!
//! Every map of the family does the same four things to a row: find its maximum `m` (and any
//! NaN), collect the candidates `z = a·(x − m) > lo` (only they can be in the support, `lo` a
//! lower bound of the threshold), find the threshold `τ` from them, and write
//! `p = ((x − m)·a − τ)₊^β · scale`. [`max_nan_bound`], [`candidates`], [`moments`] (the sums a
//! threshold search needs) and [`write_output`] are those steps; each has a portable version
//! and, where the run-time SIMD level is AVX-512 (and POPCNT is present), an AVX-512F version
//! (16 float32 / 8 float64 lanes, masked tails). The portable versions are what every other
//! level runs; a row picks its kernels once ([`Isa`]).
//!
//! * The max pass keeps 4 vector accumulators, i.e. the maxima of 64 (32) disjoint parts of
//!   the row; a power-mean bound over the larger ones gives `lo`, within a few hundredths of
//!   the threshold on typical rows ([`max_nan_bound`]). It prefetches the next 4 KiB (the next
//!   row of a batch: the hardware prefetcher does not cross pages).
//! * The candidate pass first lists, branch-free, the 16-element blocks holding an element
//!   above the screen, then converts and tests only those, compressing in registers.
//! * The output pass zeroes the row (prefetching the next output row) and computes only the
//!   listed blocks: the others hold no candidate, hence no support entry.
//!
//! The power `d^β` is exact repeated multiplication for integer `β` ([`Power::Int`]: α = 2,
//! 1.5, 1.25, 1 + 1/n) and otherwise `exp((β−1)·ln d)·d` with a double-precision `ln` (fdlibm's
//! reduction to `[√½, √2)` and its degree-14 polynomial in `s = f/(2+f)`) and `exp` (Cody–Waite
//! reduction by `ln2/16`, a 16-entry table of `2^{j/16}` and a degree-7 Taylor polynomial,
//! truncation error 1e-18; `2^n` applied with `scalef` semantics so that subnormal results
//! round once). The portable and the AVX-512 versions run the very same operations (FMA and
//! the true division included), so their outputs agree bit for bit given the same threshold;
//! only the order of the sums in the threshold search differs.
//!
//! Everything after the maximum is computed in f64 whatever the element type: `(x − m)·a` is
//! then exact or nearly so, and float32 results are rounded once, at the store (they match
//! the previous f64 implementation bit for bit on 4096×1024 standard-normal rows, α = 1.25,
//! 1.5000001, 1.5, 2). Float32 internals were not tried: a float32 `exp(β·ln d)` errs by about
//! `|log₂ p|` float32 ulps (~10 at p = 1e-3), and the general power is only about a quarter of
//! the time of the generic-α map (and absent from the others).

use std::any::TypeId;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use super::{kern, Float};
use crate::simd::{level, Level};

/// How the shifted scores are raised: `p = d^β`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Power {
    /// `β = n`: exact repeated multiplication.
    Int(u32),
    /// Any other `β > 0`: `exp((β − 1)·ln d)·d`.
    Real(f64),
}

/// Integer exponents above this use the general power (the binary powering would still be
/// exact, but such α are within 1/64 of 1, where the caller takes another path anyway).
const MAX_INT_POWER: f64 = 64.0;

impl Power {
    /// The power for `β = 1/(α − 1)`. A `β` within two ulps of an integer counts as that
    /// integer: `d^β` and `d^n` then differ by `|β − n|·|ln p| ≤ 2·eps·|ln p|` relative, which is
    /// what rounding the argument of `exp` in any `pow` costs anyway.
    pub(crate) fn from_beta(beta: f64) -> Power {
        let n = beta.round();
        if (1.0..=MAX_INT_POWER).contains(&n) && (beta - n).abs() <= 2.0 * f64::EPSILON * n {
            Power::Int(n as u32)
        } else {
            Power::Real(beta)
        }
    }

    pub(crate) fn beta(self) -> f64 {
        match self {
            Power::Int(n) => n as f64,
            Power::Real(b) => b,
        }
    }
}

/// Whether the AVX-512 kernels may run: the SIMD level is AVX-512 (so AVX-512F is present)
/// and the CPU has POPCNT (every AVX-512 CPU does; checked anyway).
#[inline]
fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::atomic::{AtomicU8, Ordering};
        static POPCNT: AtomicU8 = AtomicU8::new(0);
        if level() != Level::Avx512 {
            return false;
        }
        let mut p = POPCNT.load(Ordering::Relaxed);
        if p == 0 {
            p = if std::arch::is_x86_feature_detected!("popcnt") {
                1
            } else {
                2
            };
            POPCNT.store(p, Ordering::Relaxed);
        }
        p == 1
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Which kernels a row uses, decided once per row: [`candidates`] leaves a list of blocks for
/// [`write_output`] whose layout depends on it, so both must agree even if the level changes
/// in between (`set_simd_level` from another thread).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Isa {
    avx512: bool,
}

impl Isa {
    /// The kernels of the current SIMD level.
    #[inline]
    pub(crate) fn now() -> Isa {
        Isa { avx512: avx512() }
    }

    /// The portable kernels, whatever the CPU (tests compare the two).
    #[cfg(test)]
    pub(crate) const PORTABLE: Isa = Isa { avx512: false };
}

/// `x` as `&[f32]` when `T` is `f32`.
#[inline]
fn as_f32<T: Float>(x: &[T]) -> Option<&[f32]> {
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        // SAFETY: `T` is `f32` (same type id), so the slice is reinterpreted as itself.
        Some(unsafe { std::slice::from_raw_parts(x.as_ptr() as *const f32, x.len()) })
    } else {
        None
    }
}

#[inline]
fn as_f64<T: Float>(x: &[T]) -> Option<&[f64]> {
    if TypeId::of::<T>() == TypeId::of::<f64>() {
        // SAFETY: `T` is `f64` (same type id).
        Some(unsafe { std::slice::from_raw_parts(x.as_ptr() as *const f64, x.len()) })
    } else {
        None
    }
}

#[inline]
fn as_f32_mut<T: Float>(x: &mut [T]) -> Option<&mut [f32]> {
    if TypeId::of::<T>() == TypeId::of::<f32>() {
        // SAFETY: `T` is `f32`; the borrow of `x` is moved into the result.
        Some(unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr() as *mut f32, x.len()) })
    } else {
        None
    }
}

#[inline]
fn as_f64_mut<T: Float>(x: &mut [T]) -> Option<&mut [f64]> {
    if TypeId::of::<T>() == TypeId::of::<f64>() {
        // SAFETY: `T` is `f64`; the borrow of `x` is moved into the result.
        Some(unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr() as *mut f64, x.len()) })
    } else {
        None
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's block-list scratch (for the row functions whose public
/// signature predates it).
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Vec<u32>) -> R) -> R {
    SCRATCH.with(|c| match c.try_borrow_mut() {
        Ok(mut v) => f(&mut v),
        // Re-entered (not expected): a fresh buffer is always correct.
        Err(_) => f(&mut Vec::new()),
    })
}

// ---------------------------------------------------------------------------------- scalar math

/// fdlibm's `Lg1..Lg7` (e_log.c): `R(z) ≈ (ln((1+s)/(1−s)) − 2s)/s`, error < 2⁻⁵⁸·⁴⁵.
const LG: [f64; 7] = [
    f64::from_bits(0x3fe5555555555593),
    f64::from_bits(0x3fd999999997fa04),
    f64::from_bits(0x3fd2492494229359),
    f64::from_bits(0x3fcc71c51d8e78af),
    f64::from_bits(0x3fc7466496cb03de),
    f64::from_bits(0x3fc39a09d078c69f),
    f64::from_bits(0x3fc2f112df3e5244),
];
/// ln 2 in two pieces; the high one has 32 significant bits, so `e·LN2_HI` is exact.
const LN2_HI: f64 = f64::from_bits(0x3fe62e42fee00000);
const LN2_LO: f64 = f64::from_bits(0x3dea39ef35793c76);
const SQRT2: f64 = std::f64::consts::SQRT_2;
/// `2^{j/16}`, j = 0..15, correctly rounded.
const EXP2_TAB: [f64; 16] = [
    f64::from_bits(0x3ff0000000000000),
    f64::from_bits(0x3ff0b5586cf9890f),
    f64::from_bits(0x3ff172b83c7d517b),
    f64::from_bits(0x3ff2387a6e756238),
    f64::from_bits(0x3ff306fe0a31b715),
    f64::from_bits(0x3ff3dea64c123422),
    f64::from_bits(0x3ff4bfdad5362a27),
    f64::from_bits(0x3ff5ab07dd485429),
    f64::from_bits(0x3ff6a09e667f3bcd),
    f64::from_bits(0x3ff7a11473eb0187),
    f64::from_bits(0x3ff8ace5422aa0db),
    f64::from_bits(0x3ff9c49182a3f090),
    f64::from_bits(0x3ffae89f995ad3ad),
    f64::from_bits(0x3ffc199bdd85529c),
    f64::from_bits(0x3ffd5818dcfba487),
    f64::from_bits(0x3ffea4afa2a490da),
];
/// ln2/16 in two pieces (the high one with 32 significant bits) and its inverse.
const L16_HI: f64 = f64::from_bits(0x3fa62e42fee00000);
const L16_LO: f64 = f64::from_bits(0x3daa39ef35793c76);
const INV_L16: f64 = f64::from_bits(0x40371547652b82fe);
/// `1/k!`, k = 7 down to 2 (the Horner order).
const EXP_C: [f64; 6] = [
    1.0 / 5040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
];
/// Arguments of `exp` are clamped to this range: below it every result is 0 (it is under
/// 2⁻¹⁰⁷⁴·½), above it no argument occurs (`d ≤ 1` keeps `(β−1)·ln d` small or negative
/// except for `β < 1`, where it is at most `ln(1/d) < 745`).
const EXP_MIN: f64 = -1100.0;
const EXP_MAX: f64 = 709.0;

/// `a·b + c` with one rounding (hardware FMA on every SIMD build; the same operation as the
/// vector kernels, so portable and AVX-512 runs agree bit for bit before the final sums).
#[inline(always)]
fn fma(a: f64, b: f64, c: f64) -> f64 {
    a.mul_add(b, c)
}

/// `ln d` for finite `d > 0`, fdlibm's algorithm (≤ 1 ulp).
#[inline(always)]
pub(crate) fn ln(d: f64) -> f64 {
    let mut bits = d.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64;
    if e == 0 {
        // Subnormal: scale into the normal range (what `getexp`/`getmant` do implicitly).
        bits = (d * f64::from_bits(0x4350000000000000)).to_bits(); // 2^54
        e = ((bits >> 52) & 0x7ff) as i64 - 54;
    }
    let mut ef = (e - 1023) as f64;
    let mut mant = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if mant > SQRT2 {
        mant *= 0.5;
        ef += 1.0;
    }
    ln_reduced(mant, ef)
}

/// `ln(mant·2^e)` for `mant ∈ (√½, √2]`.
#[inline(always)]
fn ln_reduced(mant: f64, ef: f64) -> f64 {
    let f = mant - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * fma(w, fma(w, LG[5], LG[3]), LG[1]);
    let t2 = z * fma(w, fma(w, fma(w, LG[6], LG[4]), LG[2]), LG[0]);
    let r = t2 + t1;
    let hfsq = 0.5 * f * f;
    let inner = fma(s, hfsq + r, ef * LN2_LO);
    fma(ef, LN2_HI, -((hfsq - inner) - f))
}

/// `exp(w)` (≤ 2 ulp; 0 below about −745).
#[inline(always)]
pub(crate) fn exp(w: f64) -> f64 {
    let w = w.clamp(EXP_MIN, EXP_MAX);
    let k = (w * INV_L16).round_ties_even();
    let mut r = fma(-k, L16_HI, w);
    r = fma(-k, L16_LO, r);
    let mut p = EXP_C[0];
    for &c in &EXP_C[1..] {
        p = fma(p, r, c);
    }
    p = fma(p, r, 1.0);
    p = fma(p, r, 1.0);
    let j = (k as i64 & 15) as usize;
    let n = (k * 0.0625).floor();
    scalef(p * EXP2_TAB[j], n)
}

/// `y·2^n` with one rounding (`vscalefpd` semantics) for `y ∈ [0.9, 2.1]`, integral
/// `n ∈ [−1600, 1023]` (what the clamp in [`exp`] allows).
#[inline(always)]
fn scalef(mut y: f64, n: f64) -> f64 {
    let mut n = n as i64;
    if n < -1000 {
        // Exact (the product stays normal); the second product below then rounds once, into
        // the subnormal range if it must.
        y *= f64::from_bits(((1023 - 1000) as u64) << 52);
        n += 1000;
    }
    y * f64::from_bits(((n + 1023) as u64) << 52)
}

/// `d^k` by binary powering (`d^0 = 1`).
#[inline(always)]
fn powi(d: f64, mut k: u32) -> f64 {
    let mut r = 1.0;
    let mut b = d;
    while k > 0 {
        if k & 1 == 1 {
            r *= b;
        }
        k >>= 1;
        if k > 0 {
            b *= b;
        }
    }
    r
}

/// `(d^{β−1}, d^β)` for `d > 0`.
#[inline(always)]
fn pow_pair(d: f64, pw: Power) -> (f64, f64) {
    let q = match pw {
        Power::Int(n) => powi(d, n - 1),
        Power::Real(b) => exp((b - 1.0) * ln(d)),
    };
    (q, q * d)
}

// ------------------------------------------------------------------------------------ max + NaN

/// The maximum of `x` (ignoring NaN; −∞ when empty) and whether `x` holds a NaN, in one pass.
pub(crate) fn max_nan<T: Float>(isa: Isa, x: &[T]) -> (T, bool) {
    #[cfg(target_arch = "x86_64")]
    if isa.avx512 {
        if let Some(xf) = as_f32(x) {
            // SAFETY: `isa` says AVX-512F and POPCNT are present.
            let (m, nan, _) = unsafe { avx512::max_nan_f32(xf) };
            return (T::from_f64(m as f64), nan);
        }
        if let Some(xd) = as_f64(x) {
            // SAFETY: as above.
            let (m, nan, _) = unsafe { avx512::max_nan_f64(xd) };
            return (T::from_f64(m), nan);
        }
    }
    let _ = isa;
    (T::k_max(x), kern::has_nan(x))
}

/// Cutoffs (in `z = a·(x − m)`) of the subsets of lane maxima tried by [`max_nan_bound`].
const CUTS: [f64; 4] = [-0.15, -0.3, -0.5, -0.75];

/// [`max_nan`], plus a lower bound `lo ∈ [−1, 0)` of the threshold (relative to the maximum)
/// of the map `p = (a·(x − m) − τ)₊^β`.
///
/// Any `k` entries of the row give one: for β ≥ 1, by the power-mean inequality
/// `Σ (z − τ)₊^β ≥ k·(μ − τ)^β` over them (μ their mean, τ ≤ μ), which is 1 at
/// `τ = μ − k^{−1/β}`, so the root lies above; for β < 1, `Σ d^β ≥ (Σ d)^β` gives
/// `μ − 1/k`. The max pass already holds 64 (float32) or 32 (float64) lane maxima, which are
/// entries of disjoint parts of the row, i.e. distinct entries; the subsets of those above a
/// few cutoffs give bounds within a few hundredths of the threshold on typical rows (for
/// 1024 standard-normal float32 entries: −0.61 for τ = −0.60 at α = 2, −0.66 for −0.61 at
/// 1.5, −0.72 for −0.65 at 1.25), which cuts the candidates from `z > −1` by 3×–4×. The
/// portable kernels return −1.
pub(crate) fn max_nan_bound<T: Float>(isa: Isa, x: &[T], a: f64, pw: Power) -> (T, bool, f64) {
    #[cfg(target_arch = "x86_64")]
    if isa.avx512 {
        if let Some(xf) = as_f32(x) {
            // SAFETY: `isa` says AVX-512F and POPCNT are present.
            let (m, nan, lanes) = unsafe { avx512::max_nan_f32(xf) };
            let lo = if !nan && m.is_finite() {
                // SAFETY: as above.
                bound_from(unsafe { avx512::cut_sums_f32(&lanes, m as f64, a) }, pw)
            } else {
                -1.0
            };
            return (T::from_f64(m as f64), nan, lo);
        }
        if let Some(xd) = as_f64(x) {
            // SAFETY: as above.
            let (m, nan, lanes) = unsafe { avx512::max_nan_f64(xd) };
            let lo = if !nan && m.is_finite() {
                // SAFETY: as above.
                bound_from(unsafe { avx512::cut_sums_f64(&lanes, m, a) }, pw)
            } else {
                -1.0
            };
            return (T::from_f64(m), nan, lo);
        }
    }
    let _ = (isa, a, pw);
    (T::k_max(x), kern::has_nan(x), -1.0)
}

/// The best bound from `(count, Σz)` per cutoff (see [`max_nan_bound`]).
fn bound_from(sums: [(u32, f64); 4], pw: Power) -> f64 {
    let beta = pw.beta();
    let mut lo = -1.0f64;
    for (k, s) in sums {
        if k == 0 {
            continue;
        }
        let kf = k as f64;
        // k^{−1/β} (1/k for β ≤ 1), or anything above it (a weaker bound is still a bound):
        // for β ≤ 8 the root for the next power of two, by square roots, instead of exp/ln.
        let r = if beta <= 1.0 {
            1.0 / kf
        } else if beta <= 2.0 {
            1.0 / kf.sqrt()
        } else if beta <= 4.0 {
            1.0 / kf.sqrt().sqrt()
        } else if beta <= 8.0 {
            1.0 / kf.sqrt().sqrt().sqrt()
        } else {
            1.0 / root(kf, pw)
        };
        lo = lo.max(s / kf - r);
    }
    if lo == -1.0 {
        return lo;
    }
    // A margin for the rounding in z, the sums and the root (each ~1e-15 relative).
    (lo - 1e-12 * (1.0 + lo.abs())).max(-1.0)
}

// ----------------------------------------------------------------------------------- candidates

/// `z = (x − m)·a` for the entries with `z > lo`, in row order: with `lo` a lower bound of
/// the threshold (at worst −1 = max(z) − 1), the only entries that can be in the support.
/// `hot` receives the start of every block of the row holding a candidate, for
/// [`write_output`] (AVX-512 only; the portable kernels leave it empty).
#[allow(clippy::too_many_arguments)]
pub(crate) fn candidates<T: Float>(
    isa: Isa,
    x: &[T],
    m: f64,
    a: f64,
    lo: f64,
    z: &mut Vec<f64>,
    hot: &mut Vec<u32>,
) {
    z.clear();
    hot.clear();
    // The exact test is `(x − m)·a > lo` in f64; `x ≥ lo_x` (a hair below m + lo/a, to cover
    // the roundings of both sides) only screens elements out cheaply. It stays below `m`
    // however large |m|, so the maximum is always a candidate.
    let lo_x = m + lo / a;
    let lo_x = lo_x - 8.0 * f64::EPSILON * (m.abs() + (lo / a).abs());
    // `lo_x` rounded to the element type: if it rounds up, no element lies between the two,
    // and if it rounds down the test only lets more through to the exact check.
    let lo_t = T::from_f64(lo_x);
    #[cfg(target_arch = "x86_64")]
    if isa.avx512 && x.len() < u32::MAX as usize {
        // Full-vector stores past the last candidate need 8 slots of slack.
        z.reserve(x.len() + 8);
        hot.reserve(x.len() / 8 + 1);
        if let Some(xf) = as_f32(x) {
            // SAFETY: `isa` says AVX-512F and POPCNT are present; `z` and `hot` have the
            // room reserved above.
            unsafe { avx512::candidates_f32(xf, lo_t.to_f64() as f32, [lo_x, m, a, lo], z, hot) };
            return;
        }
        if let Some(xd) = as_f64(x) {
            // SAFETY: as above.
            unsafe { avx512::candidates_f64(xd, [lo_x, m, a, lo], z, hot) };
            return;
        }
    }
    let _ = isa;
    for c in x.chunks(8) {
        // Most chunks hold no candidate; one vectorised test over the chunk says so.
        if !kern::any_at_least(c, lo_t, false) {
            continue;
        }
        for &v in c {
            let v = v.to_f64();
            if v >= lo_x {
                let d = (v - m) * a;
                if d > lo {
                    z.push(d);
                }
            }
        }
    }
}

// -------------------------------------------------------------------------------------- moments

/// The sums a threshold search needs at `τ`: `(Σ d^β, Σ d^{β−1}, #{d > 0})` over
/// `d = (z − τ)₊`.
pub(crate) fn moments(isa: Isa, z: &[f64], tau: f64, pw: Power) -> (f64, f64, usize) {
    #[cfg(target_arch = "x86_64")]
    if isa.avx512 {
        // SAFETY: `isa` says AVX-512F and POPCNT are present.
        return unsafe { avx512::moments(z, tau, pw) };
    }
    let _ = isa;
    moments_portable(z, tau, pw)
}

#[inline(always)]
fn moments_body(z: &[f64], tau: f64, pw: Power) -> (f64, f64, usize) {
    let (mut sp, mut sq, mut k) = (0.0, 0.0, 0usize);
    for &v in z {
        let d = v - tau;
        if d > 0.0 {
            let (q, p) = pow_pair(d, pw);
            sp += p;
            sq += q;
            k += 1;
        }
    }
    (sp, sq, k)
}

fn moments_portable(z: &[f64], tau: f64, pw: Power) -> (f64, f64, usize) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        fn fast(z: &[f64], tau: f64, pw: Power) -> (f64, f64, usize) {
            moments_body(z, tau, pw)
        }
        if matches!(level(), Level::Avx2 | Level::Avx512) {
            // SAFETY: the SIMD level is only Avx2/Avx512 when the CPU has AVX2 and FMA.
            return unsafe { fast(z, tau, pw) };
        }
    }
    moments_body(z, tau, pw)
}

/// Keeps the entries of `z` above `t`, in order.
pub(crate) fn prune(isa: Isa, z: &mut Vec<f64>, t: f64) {
    #[cfg(target_arch = "x86_64")]
    if isa.avx512 {
        z.reserve(8);
        // SAFETY: `isa` says AVX-512F and POPCNT are present; `z` has 8 slots of slack.
        unsafe { avx512::prune(z, t) };
        return;
    }
    let _ = isa;
    // Branch-free: whether an entry stays is data-dependent and unpredictable.
    let mut w = 0;
    for r in 0..z.len() {
        let v = z[r];
        z[w] = v;
        w += (v > t) as usize;
    }
    z.truncate(w);
}

/// Over the entries of `z` above `t` (the support of `τ = t`): their number, sum, sum of
/// squares and minimum, and the maximum of the others (what the closed forms need).
pub(crate) fn support_stats(isa: Isa, z: &[f64], t: f64) -> (usize, f64, f64, f64, f64) {
    #[cfg(target_arch = "x86_64")]
    if isa.avx512 {
        // SAFETY: `isa` says AVX-512F and POPCNT are present.
        return unsafe { avx512::support_stats(z, t) };
    }
    let _ = isa;
    // Branch-free: membership is data-dependent and unpredictable.
    let (mut k, mut s, mut q) = (0usize, 0.0f64, 0.0f64);
    let (mut min_in, mut max_out) = (f64::INFINITY, f64::NEG_INFINITY);
    for &v in z {
        let inside = v > t;
        k += inside as usize;
        s += if inside { v } else { 0.0 };
        q += if inside { v * v } else { 0.0 };
        min_in = if inside { min_in.min(v) } else { min_in };
        max_out = if inside { max_out } else { max_out.max(v) };
    }
    (k, s, q, min_in, max_out)
}

/// `s^{1/β}` for `s > 0`: exact square roots for β = 1, 2, 4, else `exp(ln s / β)` with the
/// kernels above (a few ulp; `1^{1/β} = 1` exactly), compiled with FMA where there is one.
pub(crate) fn root(s: f64, pw: Power) -> f64 {
    match pw {
        Power::Int(1) => s,
        Power::Int(2) => s.sqrt(),
        Power::Int(4) => s.sqrt().sqrt(),
        _ => {
            let beta = pw.beta();
            let y = s - 1.0;
            if beta >= 1.0 && y.abs() < 1.0 / 1024.0 {
                // Near convergence of a threshold search S is within 2⁻¹⁰ of 1: ln(1 + y)
                // and exp(ln(s)/β) by their series (truncation below 1e-21 relative).
                let l = y * (1.0 - y * (0.5 - y * (1.0 / 3.0 - y * (0.25 - y * (0.2 - y / 6.0)))));
                let e = l / beta;
                return 1.0
                    + e * (1.0 + e * 0.5 * (1.0 + e / 3.0 * (1.0 + e * 0.25 * (1.0 + e * 0.2))));
            }
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn fast(s: f64, beta: f64) -> f64 {
                    exp(ln(s) / beta)
                }
                if matches!(level(), Level::Avx2 | Level::Avx512) {
                    // SAFETY: the SIMD level is only Avx2/Avx512 when the CPU has AVX2 and FMA.
                    return unsafe { fast(s, beta) };
                }
            }
            s.powf(1.0 / beta)
        }
    }
}

// --------------------------------------------------------------------------------------- output

/// `out[i] = ((x[i] − m)·a − τ)₊^β · scale`, rounded once to `T`. `hot` is the block list
/// [`candidates`] left for this row with the same `isa`: blocks not in it hold no candidate,
/// hence no support entry (`τ ≥ −1`), and are only zeroed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn write_output<T: Float>(
    isa: Isa,
    x: &[T],
    hot: &[u32],
    m: f64,
    a: f64,
    tau: f64,
    pw: Power,
    scale: f64,
    out: &mut [T],
) {
    #[cfg(target_arch = "x86_64")]
    if isa.avx512 && x.len() < u32::MAX as usize {
        if let (Some(xf), Some(of)) = (as_f32(x), as_f32_mut(out)) {
            // SAFETY: `isa` says AVX-512F and POPCNT are present; `hot` comes from
            // `candidates` with the same `isa`, so its blocks are 16-element blocks of `x`.
            unsafe { avx512::output_f32(xf, hot, m, a, tau, pw, scale, of) };
            return;
        }
        if let (Some(xd), Some(od)) = (as_f64(x), as_f64_mut(out)) {
            // SAFETY: as above, with 8-element blocks.
            unsafe { avx512::output_f64(xd, hot, m, a, tau, pw, scale, od) };
            return;
        }
    }
    let _ = (isa, hot);
    output_portable(x, m, a, tau, pw, scale, out);
}

#[inline(always)]
fn output_body<T: Float>(x: &[T], m: f64, a: f64, tau: f64, pw: Power, scale: f64, out: &mut [T]) {
    for (o, &v) in out.iter_mut().zip(x) {
        let d = (v.to_f64() - m) * a - tau;
        *o = if d > 0.0 {
            T::from_f64(pow_pair(d, pw).1 * scale)
        } else {
            T::ZERO
        };
    }
}

fn output_portable<T: Float>(
    x: &[T],
    m: f64,
    a: f64,
    tau: f64,
    pw: Power,
    scale: f64,
    out: &mut [T],
) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        fn fast<T: Float>(x: &[T], m: f64, a: f64, tau: f64, pw: Power, scale: f64, out: &mut [T]) {
            output_body(x, m, a, tau, pw, scale, out)
        }
        if matches!(level(), Level::Avx2 | Level::Avx512) {
            // SAFETY: the SIMD level is only Avx2/Avx512 when the CPU has AVX2 and FMA.
            return unsafe { fast(x, m, a, tau, pw, scale, out) };
        }
    }
    output_body(x, m, a, tau, pw, scale, out)
}

// -------------------------------------------------------------------------------------- AVX-512

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::*;

    #[inline(always)]
    unsafe fn ln_pd(d: __m512d) -> __m512d {
        // getexp/getmant handle subnormals exactly like the portable bit extraction.
        let mut e = _mm512_getexp_pd(d);
        let mut mant = _mm512_getmant_pd::<_MM_MANT_NORM_1_2, _MM_MANT_SIGN_SRC>(d);
        let big = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(mant, _mm512_set1_pd(SQRT2));
        mant = _mm512_mask_mul_pd(mant, big, mant, _mm512_set1_pd(0.5));
        e = _mm512_mask_add_pd(e, big, e, _mm512_set1_pd(1.0));
        let one = _mm512_set1_pd(1.0);
        let f = _mm512_sub_pd(mant, one);
        let s = _mm512_div_pd(f, _mm512_add_pd(_mm512_set1_pd(2.0), f));
        let z = _mm512_mul_pd(s, s);
        let w = _mm512_mul_pd(z, z);
        let c = [
            _mm512_set1_pd(LG[0]),
            _mm512_set1_pd(LG[1]),
            _mm512_set1_pd(LG[2]),
            _mm512_set1_pd(LG[3]),
            _mm512_set1_pd(LG[4]),
            _mm512_set1_pd(LG[5]),
            _mm512_set1_pd(LG[6]),
        ];
        let t1 = _mm512_mul_pd(w, _mm512_fmadd_pd(w, _mm512_fmadd_pd(w, c[5], c[3]), c[1]));
        let t2 = _mm512_mul_pd(
            z,
            _mm512_fmadd_pd(
                w,
                _mm512_fmadd_pd(w, _mm512_fmadd_pd(w, c[6], c[4]), c[2]),
                c[0],
            ),
        );
        let r = _mm512_add_pd(t2, t1);
        let hfsq = _mm512_mul_pd(_mm512_mul_pd(_mm512_set1_pd(0.5), f), f);
        let inner = _mm512_fmadd_pd(
            s,
            _mm512_add_pd(hfsq, r),
            _mm512_mul_pd(e, _mm512_set1_pd(LN2_LO)),
        );
        let neg = _mm512_sub_pd(_mm512_sub_pd(hfsq, inner), f);
        _mm512_fmsub_pd(e, _mm512_set1_pd(LN2_HI), neg)
    }

    #[inline(always)]
    unsafe fn exp_pd(w: __m512d) -> __m512d {
        let w = _mm512_min_pd(
            _mm512_max_pd(w, _mm512_set1_pd(EXP_MIN)),
            _mm512_set1_pd(EXP_MAX),
        );
        let k = _mm512_roundscale_pd::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_pd(w, _mm512_set1_pd(INV_L16)),
        );
        let mut r = _mm512_fnmadd_pd(k, _mm512_set1_pd(L16_HI), w);
        r = _mm512_fnmadd_pd(k, _mm512_set1_pd(L16_LO), r);
        let mut p = _mm512_set1_pd(EXP_C[0]);
        for &c in &EXP_C[1..] {
            p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(c));
        }
        let one = _mm512_set1_pd(1.0);
        p = _mm512_fmadd_pd(p, r, one);
        p = _mm512_fmadd_pd(p, r, one);
        // k + 1.5·2⁵² holds k (two's complement) in its low mantissa bits: the low four
        // index the table (bit 3 picks the second register).
        let idx = _mm512_castpd_si512(_mm512_add_pd(k, _mm512_set1_pd(6755399441055744.0)));
        let lo = _mm512_loadu_pd(EXP2_TAB.as_ptr());
        let hi = _mm512_loadu_pd(EXP2_TAB.as_ptr().add(8));
        let t = _mm512_permutex2var_pd(lo, idx, hi);
        let n = _mm512_roundscale_pd::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(
            _mm512_mul_pd(k, _mm512_set1_pd(0.0625)),
        );
        _mm512_scalef_pd(_mm512_mul_pd(p, t), n)
    }

    #[inline(always)]
    unsafe fn powi_pd(d: __m512d, mut k: u32) -> __m512d {
        let mut r = _mm512_set1_pd(1.0);
        let mut b = d;
        while k > 0 {
            if k & 1 == 1 {
                r = _mm512_mul_pd(r, b);
            }
            k >>= 1;
            if k > 0 {
                b = _mm512_mul_pd(b, b);
            }
        }
        r
    }

    /// `(d^{β−1}, d^β)` in the lanes of `act` (zeros elsewhere); `d` must be > 0 there.
    #[inline(always)]
    unsafe fn pow_pair_pd(d: __m512d, act: __mmask8, pw: Power) -> (__m512d, __m512d) {
        let q = match pw {
            Power::Int(n) => powi_pd(d, n - 1),
            Power::Real(b) => {
                // Inactive lanes get d = 1 so that no lane takes a logarithm of ≤ 0.
                let ds = _mm512_mask_mov_pd(_mm512_set1_pd(1.0), act, d);
                exp_pd(_mm512_mul_pd(_mm512_set1_pd(b - 1.0), ln_pd(ds)))
            }
        };
        // Zeros (+0, not the −0 of 0·d for d < 0) outside `act`.
        (_mm512_maskz_mov_pd(act, q), _mm512_maskz_mul_pd(act, q, d))
    }

    #[inline(always)]
    fn tail8(rem: usize) -> __mmask8 {
        if rem >= 8 {
            0xff
        } else {
            ((1u32 << rem) - 1) as __mmask8
        }
    }

    #[inline(always)]
    fn tail16(rem: usize) -> __mmask16 {
        if rem >= 16 {
            0xffff
        } else {
            ((1u32 << rem) - 1) as __mmask16
        }
    }

    /// Also returns the 64 lane maxima (−∞ where a lane saw nothing): maxima of disjoint
    /// parts of the row.
    #[target_feature(enable = "avx512f,popcnt")]
    pub(super) unsafe fn max_nan_f32(x: &[f32]) -> (f32, bool, [f32; 64]) {
        let n = x.len();
        let p = x.as_ptr();
        let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
        let (mut a0, mut a1, mut a2, mut a3) = (ninf, ninf, ninf, ninf);
        let mut nan: __mmask16 = 0;
        let mut i = 0;
        while i + 64 <= n {
            // 4 KiB ahead: the next row of a typical batch, whose first touch would
            // otherwise stall (one prefetch per 64-byte line).
            let q = (p.add(i) as *const i8).wrapping_add(AHEAD);
            _mm_prefetch::<_MM_HINT_T0>(q);
            _mm_prefetch::<_MM_HINT_T0>(q.wrapping_add(64));
            _mm_prefetch::<_MM_HINT_T0>(q.wrapping_add(128));
            _mm_prefetch::<_MM_HINT_T0>(q.wrapping_add(192));
            let v0 = _mm512_loadu_ps(p.add(i));
            let v1 = _mm512_loadu_ps(p.add(i + 16));
            let v2 = _mm512_loadu_ps(p.add(i + 32));
            let v3 = _mm512_loadu_ps(p.add(i + 48));
            // max(v, acc) returns acc when v is NaN: NaN is tracked separately.
            a0 = _mm512_max_ps(v0, a0);
            a1 = _mm512_max_ps(v1, a1);
            a2 = _mm512_max_ps(v2, a2);
            a3 = _mm512_max_ps(v3, a3);
            nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v0, v1)
                | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v2, v3);
            i += 64;
        }
        while i < n {
            let k = tail16(n - i);
            let v = _mm512_mask_loadu_ps(ninf, k, p.add(i));
            a0 = _mm512_max_ps(v, a0);
            nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
            i += 16;
        }
        let mut lanes = [0f32; 64];
        _mm512_storeu_ps(lanes.as_mut_ptr(), a0);
        _mm512_storeu_ps(lanes.as_mut_ptr().add(16), a1);
        _mm512_storeu_ps(lanes.as_mut_ptr().add(32), a2);
        _mm512_storeu_ps(lanes.as_mut_ptr().add(48), a3);
        let a = _mm512_max_ps(_mm512_max_ps(a0, a1), _mm512_max_ps(a2, a3));
        (_mm512_reduce_max_ps(a), nan != 0, lanes)
    }

    /// As [`max_nan_f32`], with 32 lane maxima.
    #[target_feature(enable = "avx512f,popcnt")]
    pub(super) unsafe fn max_nan_f64(x: &[f64]) -> (f64, bool, [f64; 32]) {
        let n = x.len();
        let p = x.as_ptr();
        let ninf = _mm512_set1_pd(f64::NEG_INFINITY);
        let (mut a0, mut a1, mut a2, mut a3) = (ninf, ninf, ninf, ninf);
        let mut nan: __mmask8 = 0;
        let mut i = 0;
        while i + 32 <= n {
            let q = (p.add(i) as *const i8).wrapping_add(AHEAD);
            _mm_prefetch::<_MM_HINT_T0>(q);
            _mm_prefetch::<_MM_HINT_T0>(q.wrapping_add(64));
            _mm_prefetch::<_MM_HINT_T0>(q.wrapping_add(128));
            _mm_prefetch::<_MM_HINT_T0>(q.wrapping_add(192));
            let v0 = _mm512_loadu_pd(p.add(i));
            let v1 = _mm512_loadu_pd(p.add(i + 8));
            let v2 = _mm512_loadu_pd(p.add(i + 16));
            let v3 = _mm512_loadu_pd(p.add(i + 24));
            a0 = _mm512_max_pd(v0, a0);
            a1 = _mm512_max_pd(v1, a1);
            a2 = _mm512_max_pd(v2, a2);
            a3 = _mm512_max_pd(v3, a3);
            nan |= _mm512_cmp_pd_mask::<_CMP_UNORD_Q>(v0, v1)
                | _mm512_cmp_pd_mask::<_CMP_UNORD_Q>(v2, v3);
            i += 32;
        }
        while i < n {
            let k = tail8(n - i);
            let v = _mm512_mask_loadu_pd(ninf, k, p.add(i));
            a0 = _mm512_max_pd(v, a0);
            nan |= _mm512_cmp_pd_mask::<_CMP_UNORD_Q>(v, v);
            i += 8;
        }
        let mut lanes = [0f64; 32];
        _mm512_storeu_pd(lanes.as_mut_ptr(), a0);
        _mm512_storeu_pd(lanes.as_mut_ptr().add(8), a1);
        _mm512_storeu_pd(lanes.as_mut_ptr().add(16), a2);
        _mm512_storeu_pd(lanes.as_mut_ptr().add(24), a3);
        let a = _mm512_max_pd(_mm512_max_pd(a0, a1), _mm512_max_pd(a2, a3));
        (_mm512_reduce_max_pd(a), nan != 0, lanes)
    }

    /// Per cutoff of [`CUTS`]: the number and the sum of `z = (v − m)·a` above it, over the
    /// 8-lane groups `z`.
    #[inline(always)]
    unsafe fn cut_sums(z: &[__m512d]) -> [(u32, f64); 4] {
        let mut out = [(0u32, 0.0f64); 4];
        for (o, &c) in out.iter_mut().zip(CUTS.iter()) {
            let cv = _mm512_set1_pd(c);
            let mut s = _mm512_setzero_pd();
            let mut k = 0u32;
            for &zj in z {
                let msk = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(zj, cv);
                s = _mm512_mask_add_pd(s, msk, s, zj);
                k += msk.count_ones();
            }
            *o = (k, _mm512_reduce_add_pd(s));
        }
        out
    }

    #[target_feature(enable = "avx512f,popcnt")]
    pub(super) unsafe fn cut_sums_f32(l: &[f32; 64], m: f64, a: f64) -> [(u32, f64); 4] {
        let (mv, av) = (_mm512_set1_pd(m), _mm512_set1_pd(a));
        let mut z = [_mm512_setzero_pd(); 8];
        for (j, zj) in z.iter_mut().enumerate() {
            let v = _mm512_cvtps_pd(_mm256_loadu_ps(l.as_ptr().add(8 * j)));
            *zj = _mm512_mul_pd(_mm512_sub_pd(v, mv), av);
        }
        cut_sums(&z)
    }

    #[target_feature(enable = "avx512f,popcnt")]
    pub(super) unsafe fn cut_sums_f64(l: &[f64; 32], m: f64, a: f64) -> [(u32, f64); 4] {
        let (mv, av) = (_mm512_set1_pd(m), _mm512_set1_pd(a));
        let mut z = [_mm512_setzero_pd(); 4];
        for (j, zj) in z.iter_mut().enumerate() {
            let v = _mm512_loadu_pd(l.as_ptr().add(8 * j));
            *zj = _mm512_mul_pd(_mm512_sub_pd(v, mv), av);
        }
        cut_sums(&z)
    }

    /// Exact candidate test of 8 widened elements selected by `sel`; the passing ones are
    /// stored contiguously at `*dst` (a full 8-lane store: 8 slots of slack needed).
    /// `c = [lo_x, m, a, lo]`: selected elements with `v ≥ lo_x` and `(v − m)·a > lo` pass.
    #[inline(always)]
    unsafe fn push8(vd: __m512d, sel: __mmask8, c: [f64; 4], dst: &mut *mut f64) {
        let ok = sel & _mm512_cmp_pd_mask::<_CMP_GE_OQ>(vd, _mm512_set1_pd(c[0]));
        let d = _mm512_mul_pd(
            _mm512_sub_pd(vd, _mm512_set1_pd(c[1])),
            _mm512_set1_pd(c[2]),
        );
        let ok = ok & _mm512_cmp_pd_mask::<_CMP_GT_OQ>(d, _mm512_set1_pd(c[3]));
        // Compressing in a register and storing all 8 lanes is much faster than the
        // compress-to-memory form.
        _mm512_storeu_pd(*dst, _mm512_maskz_compress_pd(ok, d));
        *dst = dst.add(ok.count_ones() as usize);
    }

    /// Prefetch distance: the next 4 KiB, i.e. the start of the next row of a typical batch
    /// (the hardware prefetcher does not cross into the next page by itself).
    const AHEAD: usize = 4096;

    /// Two passes: a branch-free one lists the 16-element blocks holding an element
    /// `≥ lo_t` (most hold none, in an unpredictable pattern), the second converts and tests
    /// only those. `z` needs capacity `x.len() + 8`, `hot` `x.len()/16 + 1`; both are
    /// cleared first.
    #[target_feature(enable = "avx512f,popcnt")]
    pub(super) unsafe fn candidates_f32(
        x: &[f32],
        lo_t: f32,
        c: [f64; 4],
        z: &mut Vec<f64>,
        hot: &mut Vec<u32>,
    ) {
        let n = x.len();
        let p = x.as_ptr();
        let lot = _mm512_set1_ps(lo_t);
        let hp = hot.as_mut_ptr();
        let mut nh = 0usize;
        let mut i = 0;
        while i < n {
            let k = tail16(n - i);
            let v = _mm512_maskz_loadu_ps(k, p.add(i));
            let mk = k & _mm512_cmp_ps_mask::<_CMP_GE_OQ>(v, lot);
            *hp.add(nh) = i as u32;
            nh += (mk != 0) as usize;
            i += 16;
        }
        hot.set_len(nh);
        let start = z.as_mut_ptr();
        let mut dst = start;
        for &b in hot.iter() {
            let b = b as usize;
            let k = tail16(n - b);
            let v = _mm512_maskz_loadu_ps(k, p.add(b));
            let mk = k & _mm512_cmp_ps_mask::<_CMP_GE_OQ>(v, lot);
            let vl = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
            push8(vl, mk as __mmask8, c, &mut dst);
            let h = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
            push8(_mm512_cvtps_pd(h), (mk >> 8) as __mmask8, c, &mut dst);
        }
        z.set_len(dst.offset_from(start) as usize);
    }

    /// As [`candidates_f32`], with 8-element blocks (`hot` capacity `x.len()/8 + 1`).
    #[target_feature(enable = "avx512f,popcnt")]
    pub(super) unsafe fn candidates_f64(
        x: &[f64],
        c: [f64; 4],
        z: &mut Vec<f64>,
        hot: &mut Vec<u32>,
    ) {
        let n = x.len();
        let p = x.as_ptr();
        let lov = _mm512_set1_pd(c[0]);
        let hp = hot.as_mut_ptr();
        let mut nh = 0usize;
        let mut i = 0;
        while i < n {
            let k = tail8(n - i);
            let v = _mm512_maskz_loadu_pd(k, p.add(i));
            let mk = k & _mm512_cmp_pd_mask::<_CMP_GE_OQ>(v, lov);
            *hp.add(nh) = i as u32;
            nh += (mk != 0) as usize;
            i += 8;
        }
        hot.set_len(nh);
        let start = z.as_mut_ptr();
        let mut dst = start;
        for &b in hot.iter() {
            let b = b as usize;
            let k = tail8(n - b);
            push8(_mm512_maskz_loadu_pd(k, p.add(b)), k, c, &mut dst);
        }
        z.set_len(dst.offset_from(start) as usize);
    }

    /// `z` needs 8 slots of slack beyond its length.
    #[target_feature(enable = "avx512f,popcnt")]
    pub(super) unsafe fn prune(z: &mut Vec<f64>, t: f64) {
        let n = z.len();
        let p = z.as_mut_ptr();
        let tv = _mm512_set1_pd(t);
        let mut w = 0usize;
        let mut i = 0;
        while i < n {
            let k = tail8(n - i);
            let v = _mm512_maskz_loadu_pd(k, p.add(i));
            let keep = k & _mm512_cmp_pd_mask::<_CMP_GT_OQ>(v, tv);
            // w ≤ i: the 8-lane store only overwrites entries already loaded (or slack).
            _mm512_storeu_pd(p.add(w), _mm512_maskz_compress_pd(keep, v));
            w += keep.count_ones() as usize;
            i += 8;
        }
        z.set_len(w);
    }

    #[target_feature(enable = "avx512f,popcnt")]
    pub(super) unsafe fn support_stats(z: &[f64], t: f64) -> (usize, f64, f64, f64, f64) {
        let n = z.len();
        let p = z.as_ptr();
        let tv = _mm512_set1_pd(t);
        let zero = _mm512_setzero_pd();
        let (mut s, mut q) = (zero, zero);
        let mut mn = _mm512_set1_pd(f64::INFINITY);
        let mut mx = _mm512_set1_pd(f64::NEG_INFINITY);
        let mut k = 0usize;
        let mut i = 0;
        while i < n {
            let m = tail8(n - i);
            let v = _mm512_maskz_loadu_pd(m, p.add(i));
            let inside = m & _mm512_cmp_pd_mask::<_CMP_GT_OQ>(v, tv);
            let outside = m & !inside;
            s = _mm512_mask_add_pd(s, inside, s, v);
            q = _mm512_mask_add_pd(q, inside, q, _mm512_mul_pd(v, v));
            mn = _mm512_mask_min_pd(mn, inside, mn, v);
            mx = _mm512_mask_max_pd(mx, outside, mx, v);
            k += inside.count_ones() as usize;
            i += 8;
        }
        (
            k,
            _mm512_reduce_add_pd(s),
            _mm512_reduce_add_pd(q),
            _mm512_reduce_min_pd(mn),
            _mm512_reduce_max_pd(mx),
        )
    }

    #[target_feature(enable = "avx512f,popcnt")]
    pub(super) unsafe fn moments(z: &[f64], tau: f64, pw: Power) -> (f64, f64, usize) {
        let n = z.len();
        let p = z.as_ptr();
        let t = _mm512_set1_pd(tau);
        let zero = _mm512_setzero_pd();
        let (mut sp, mut sq) = (zero, zero);
        let mut cnt = 0usize;
        let mut i = 0;
        while i < n {
            let k = tail8(n - i);
            let d = _mm512_sub_pd(_mm512_maskz_loadu_pd(k, p.add(i)), t);
            let act = k & _mm512_cmp_pd_mask::<_CMP_GT_OQ>(d, zero);
            if act != 0 {
                let (q, pp) = pow_pair_pd(d, act, pw);
                sp = _mm512_add_pd(sp, pp);
                sq = _mm512_add_pd(sq, q);
                cnt += act.count_ones() as usize;
            }
            i += 8;
        }
        (_mm512_reduce_add_pd(sp), _mm512_reduce_add_pd(sq), cnt)
    }

    /// `((v − m)·a − τ)₊^β·scale` of 8 widened elements (zeros where d ≤ 0).
    #[inline(always)]
    unsafe fn out8(v: __m512d, m: f64, a: f64, tau: f64, pw: Power, scale: f64) -> __m512d {
        let d = _mm512_sub_pd(
            _mm512_mul_pd(_mm512_sub_pd(v, _mm512_set1_pd(m)), _mm512_set1_pd(a)),
            _mm512_set1_pd(tau),
        );
        let act = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(d, _mm512_setzero_pd());
        // A general power costs far more than a mispredicted branch; integer ones do not.
        if act == 0 && matches!(pw, Power::Real(_)) {
            return _mm512_setzero_pd();
        }
        let (_, p) = pow_pair_pd(d, act, pw);
        _mm512_mul_pd(p, _mm512_set1_pd(scale))
    }

    /// Zeroes the row (prefetching the next 4 KiB: the next output row of a typical batch;
    /// a `prefetchw` measured the same), then computes the blocks listed in `hot`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,popcnt")]
    pub(super) unsafe fn output_f32(
        x: &[f32],
        hot: &[u32],
        m: f64,
        a: f64,
        tau: f64,
        pw: Power,
        scale: f64,
        out: &mut [f32],
    ) {
        let n = x.len().min(out.len());
        let p = x.as_ptr();
        let o = out.as_mut_ptr();
        let zero = _mm512_setzero_ps();
        let mut i = 0;
        while i < n {
            _mm_prefetch::<_MM_HINT_T0>((o.add(i) as *const i8).wrapping_add(AHEAD));
            _mm512_mask_storeu_ps(o.add(i), tail16(n - i), zero);
            i += 16;
        }
        for &b in hot {
            let b = b as usize;
            if b >= n {
                break;
            }
            let k = tail16(n - b);
            let v = _mm512_maskz_loadu_ps(k, p.add(b));
            let lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
            let h = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
            let rl = _mm512_cvtpd_ps(out8(lo, m, a, tau, pw, scale));
            let rh = _mm512_cvtpd_ps(out8(_mm512_cvtps_pd(h), m, a, tau, pw, scale));
            let res = _mm512_castpd_ps(_mm512_insertf64x4::<1>(
                _mm512_castps_pd(_mm512_castps256_ps512(rl)),
                _mm256_castps_pd(rh),
            ));
            _mm512_mask_storeu_ps(o.add(b), k, res);
        }
    }

    /// As [`output_f32`], with 8-element blocks.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,popcnt")]
    pub(super) unsafe fn output_f64(
        x: &[f64],
        hot: &[u32],
        m: f64,
        a: f64,
        tau: f64,
        pw: Power,
        scale: f64,
        out: &mut [f64],
    ) {
        let n = x.len().min(out.len());
        let p = x.as_ptr();
        let o = out.as_mut_ptr();
        let zero = _mm512_setzero_pd();
        let mut i = 0;
        while i < n {
            _mm_prefetch::<_MM_HINT_T0>((o.add(i) as *const i8).wrapping_add(AHEAD));
            _mm512_mask_storeu_pd(o.add(i), tail8(n - i), zero);
            i += 8;
        }
        for &b in hot {
            let b = b as usize;
            if b >= n {
                break;
            }
            let k = tail8(n - b);
            let v = _mm512_maskz_loadu_pd(k, p.add(b));
            _mm512_mask_storeu_pd(o.add(b), k, out8(v, m, a, tau, pw, scale));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_ln_exp_are_accurate() {
        let mut worst_ln = 0f64;
        let mut worst_exp = 0f64;
        let mut d = 1e-310f64;
        while d < 10.0 {
            let want = d.ln();
            let got = ln(d);
            let err = ((got - want) / want.abs().max(1e-300)).abs();
            if want != 0.0 {
                worst_ln = worst_ln.max(err);
            }
            d *= 1.0137;
        }
        let mut w = -740.0f64;
        while w < 700.0 {
            let want = w.exp();
            let got = exp(w);
            if want > 1e-300 {
                worst_exp = worst_exp.max(((got - want) / want).abs());
            }
            w += 0.01237;
        }
        assert!(worst_ln < 4e-16, "ln {worst_ln}");
        assert!(worst_exp < 4e-16, "exp {worst_exp}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(exp(-1e5), 0.0);
        // Subnormal results round once (to within one subnormal step of the libm value).
        for w in [-709.5, -720.0, -740.0, -744.0] {
            let (got, want) = (exp(w), f64::exp(w));
            assert!(
                (got - want).abs() <= 1.5 * want.max(5e-324) * 1e-15 + 5e-324,
                "{w}"
            );
        }
    }

    fn rng(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed | 1;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
    }

    /// Rows of every length up to 70 plus long ones, with ties, huge and tiny values.
    fn rows(seed: u64) -> Vec<Vec<f64>> {
        let mut r = rng(seed);
        let mut out = Vec::new();
        for n in (0..=70).chain([255, 1000, 1025]) {
            out.push((0..n).map(|_| (r() - 0.5) * 8.0).collect::<Vec<_>>());
            out.push((0..n).map(|_| ((r() * 6.0) as i32) as f64 * 0.25).collect());
            out.push((0..n).map(|_| (r() - 0.5) * 1e-30).collect());
            out.push((0..n).map(|_| 1e30 + (r() - 0.5) * 1e16).collect());
        }
        out
    }

    const POWERS: [Power; 11] = [
        Power::Int(1),
        Power::Int(2),
        Power::Int(3),
        Power::Int(4),
        Power::Int(7),
        Power::Real(0.3),
        Power::Real(0.5),
        Power::Real(1.7),
        Power::Real(1.9999996),
        Power::Real(2.5),
        Power::Real(60.5),
    ];

    fn close(a: f64, b: f64, rtol: f64) -> bool {
        a == b || (a - b).abs() <= rtol * a.abs().max(b.abs())
    }

    /// The AVX-512 kernels against the portable ones (run-time detected; skipped without).
    #[test]
    fn avx512_kernels_match_portable() {
        let fast = Isa::now();
        if !fast.avx512 {
            return;
        }
        let slow = Isa::PORTABLE;
        for (ri, row) in rows(7).iter().enumerate() {
            let r32: Vec<f32> = row.iter().map(|&v| v as f32).collect();
            // Misaligned starts.
            for off in 0..3.min(row.len() + 1) {
                let x = &row[off..];
                let x32 = &r32[off..];
                assert_eq!(max_nan(fast, x), max_nan(slow, x), "row {ri}");
                assert_eq!(max_nan(fast, x32), max_nan(slow, x32), "row {ri}");
                if x.is_empty() {
                    continue;
                }
                let m = max_nan(slow, x).0;
                let m32 = max_nan(slow, x32).0 as f64;
                for (a, lo) in [
                    (1.0, -1.0),
                    (0.5, -1.0),
                    (0.25, -0.6),
                    (1e-3, -1.0),
                    (3.0, -0.3),
                ] {
                    let (mut z1, mut z2, mut h1, mut h2) = (vec![], vec![], vec![], vec![]);
                    candidates(fast, x, m, a, lo, &mut z1, &mut h1);
                    candidates(slow, x, m, a, lo, &mut z2, &mut h2);
                    assert_eq!(z1, z2, "row {ri} a {a}");
                    candidates(fast, x32, m32, a, lo, &mut z1, &mut h1);
                    candidates(slow, x32, m32, a, lo, &mut z2, &mut h2);
                    assert_eq!(z1, z2, "row {ri} a {a} f32");
                    let lo = -1.0;
                    candidates(slow, x, m, a, lo, &mut z2, &mut h2);
                    for tau in [-1.0, -0.7, -0.3, -0.01] {
                        for pw in POWERS {
                            let (p1, q1, k1) = moments(fast, &z2, tau, pw);
                            let (p2, q2, k2) = moments(slow, &z2, tau, pw);
                            assert_eq!(k1, k2);
                            assert!(close(p1, p2, 1e-13) && close(q1, q2, 1e-13), "{pw:?}");
                            let scale = 1.0 / p2.max(1e-300);
                            let mut o1 = vec![0.0; x.len()];
                            let mut o2 = vec![0.0; x.len()];
                            let hot = {
                                candidates(fast, x, m, a, lo, &mut z1, &mut h1);
                                h1.clone()
                            };
                            write_output(fast, x, &hot, m, a, tau, pw, scale, &mut o1);
                            write_output(slow, x, &[], m, a, tau, pw, scale, &mut o2);
                            assert_eq!(o1, o2, "row {ri} a {a} tau {tau} {pw:?}");
                            let mut o1 = vec![0.0f32; x32.len()];
                            let mut o2 = vec![0.0f32; x32.len()];
                            candidates(fast, x32, m32, a, lo, &mut z1, &mut h1);
                            write_output(fast, x32, &h1, m32, a, tau, pw, scale, &mut o1);
                            write_output(slow, x32, &[], m32, a, tau, pw, scale, &mut o2);
                            assert_eq!(o1, o2, "row {ri} a {a} tau {tau} {pw:?} f32");
                        }
                        let s1 = support_stats(fast, &z2, tau);
                        let s2 = support_stats(slow, &z2, tau);
                        assert_eq!((s1.0, s1.3, s1.4), (s2.0, s2.3, s2.4));
                        assert!(close(s1.1, s2.1, 1e-13) && close(s1.2, s2.2, 1e-13));
                        let (mut p1, mut p2) = (z2.clone(), z2.clone());
                        prune(fast, &mut p1, tau);
                        prune(slow, &mut p2, tau);
                        assert_eq!(p1, p2);
                    }
                }
            }
        }
        // NaN anywhere is reported by both.
        for n in 1..80 {
            for at in [0, n / 2, n - 1] {
                let mut x = vec![1.0f32; n];
                x[at] = f32::NAN;
                assert!(max_nan(fast, &x).1 && max_nan(slow, &x).1);
                let mut x = vec![1.0f64; n];
                x[at] = f64::NAN;
                assert!(max_nan(fast, &x).1 && max_nan(slow, &x).1);
            }
        }
    }

    #[test]
    fn roots() {
        for pw in POWERS {
            let b = pw.beta();
            for s in [
                1e-300,
                0.3,
                0.999,
                1.0 - 1e-4,
                1.0,
                1.0 + 3e-7,
                1.0009,
                1.5,
                7.0,
                1e300,
            ] {
                let (got, want) = (root(s, pw), s.powf(1.0 / b));
                // exp(ln(s)/β) carries the rounding of its argument, |ln(s)/β|·eps.
                let tol = 4e-16 * (4.0 + (s.ln() / b).abs());
                assert!(close(got, want, tol), "{pw:?} {s}: {got} {want}");
            }
        }
        assert_eq!(root(1.0, Power::Real(1.7)), 1.0);
    }

    #[test]
    fn power_classification() {
        assert_eq!(Power::from_beta(1.0 / 0.25), Power::Int(4));
        assert_eq!(Power::from_beta(1.0 / (4.0f64 / 3.0 - 1.0)), Power::Int(3));
        assert_eq!(
            Power::from_beta(1.0 / 0.5000001),
            Power::Real(1.0 / 0.5000001)
        );
        assert!(matches!(Power::from_beta(0.5), Power::Real(_)));
        assert!(matches!(Power::from_beta(1e3), Power::Real(_)));
    }
}
