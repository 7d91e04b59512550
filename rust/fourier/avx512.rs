//! AVX-512F kernels for `pdf` / `logpdf` / `cdf` on both domains, and the sincos + two-
//! polynomial Horner of the sampler's Newton steps.
//!
//! A block is `NV` 8-wide vectors (`BLOCK = 8·NV` points) kept in `zmm` registers from the
//! load of `x` to the store of the result: (real line: `exp`/`expm1` → `tanh`, `sech²`,
//! `log sech²`), `sincospi`, complex Horner, `|g|²` (or `ln`, or the CDF's `Re(z·H)`), support
//! masks. Every function here must only be called after `simd::level()` reported Avx512
//! (which implies avx512f, avx2 and fma).
//!
//! Performance notes (Zen 5, 512-bit datapath, 2 FMA pipes × 4-cycle latency): complex
//! Horner costs 4 FMAs per coefficient per vector with a 2-FMA (8-cycle) dependency chain
//! per step, so NV = 4 vectors exactly balance latency and throughput; NV = 6 gained ~10%,
//! NV = 8 nothing more (figures in the notes of `eval.rs`). `ln` is vectorised here
//! (`getexp`/`getmant` + atanh series) because the scalar libm `ln` per lane cost as much
//! as the whole N = 32 Horner.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;
use std::f64::consts::{LN_2, PI};

use super::eval::{C1, C2, C3, C4, C5, C6, C7, C8, S1, S2, S3, S4, S5, S6, S7, W};
use super::model::{Channel, C64};

/// 8-wide vectors per block (4: 304 M pdf/s, 6: 336, 8: 331 at N = 32 on Zen 5).
pub(crate) const NV: usize = 6;
/// Points per block.
pub(crate) const BLOCK: usize = 8 * NV;

#[inline(always)]
fn c(v: f64) -> __m512d {
    // SAFETY: only reached from avx512f functions (module contract).
    unsafe { _mm512_set1_pd(v) }
}

/// `(sin πx, cos πx)`, the same reduction and polynomials as [`super::eval::sincospi`].
#[inline]
#[target_feature(enable = "avx512f")]
fn sincospi8(x: __m512d) -> (__m512d, __m512d) {
    let k = _mm512_roundscale_pd::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_add_pd(x, x),
    );
    let r = _mm512_fnmadd_pd(c(0.5), k, x);
    let t = _mm512_mul_pd(c(PI), r);
    let t2 = _mm512_mul_pd(t, t);
    let mut ps = _mm512_fmadd_pd(c(S7), t2, c(S6));
    ps = _mm512_fmadd_pd(ps, t2, c(S5));
    ps = _mm512_fmadd_pd(ps, t2, c(S4));
    ps = _mm512_fmadd_pd(ps, t2, c(S3));
    ps = _mm512_fmadd_pd(ps, t2, c(S2));
    ps = _mm512_fmadd_pd(ps, t2, c(S1));
    let s = _mm512_fmadd_pd(_mm512_mul_pd(t, t2), ps, t);
    let mut pc = _mm512_fmadd_pd(c(C8), t2, c(C7));
    pc = _mm512_fmadd_pd(pc, t2, c(C6));
    pc = _mm512_fmadd_pd(pc, t2, c(C5));
    pc = _mm512_fmadd_pd(pc, t2, c(C4));
    pc = _mm512_fmadd_pd(pc, t2, c(C3));
    pc = _mm512_fmadd_pd(pc, t2, c(C2));
    pc = _mm512_fmadd_pd(pc, t2, c(C1));
    let co = _mm512_fmadd_pd(t2, pc, c(1.0));
    // q = k mod 4 ∈ {0, 1, 2, 3} (NaN for non-finite x: every mask below is then false and
    // the NaN of `r` flows through).
    let fl = _mm512_roundscale_pd::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(_mm512_mul_pd(
        k,
        c(0.25),
    ));
    let q = _mm512_fnmadd_pd(c(4.0), fl, k);
    let is1 = _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(q, c(1.0));
    let is2 = _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(q, c(2.0));
    let is3 = _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(q, c(3.0));
    let odd = is1 | is3;
    let s1 = _mm512_mask_blend_pd(odd, s, co);
    let c1 = _mm512_mask_blend_pd(odd, co, s);
    let sign = _mm512_set1_epi64(i64::MIN);
    let neg = |v: __m512d, m: __mmask8| {
        _mm512_castsi512_pd(_mm512_mask_xor_epi64(
            _mm512_castpd_si512(v),
            m,
            _mm512_castpd_si512(v),
            sign,
        ))
    };
    (neg(s1, is2 | is3), neg(c1, is1 | is2))
}

// atanh series: ln m = 2f·(1 + f²/3 + f⁴/5 + …), f = (m − 1)/(m + 1), |f| < 0.2 for
// m ∈ [0.75, 1.5); 12 terms leave < 1e-17 relative.
const L: [f64; 12] = [
    1.0 / 3.0,
    1.0 / 5.0,
    1.0 / 7.0,
    1.0 / 9.0,
    1.0 / 11.0,
    1.0 / 13.0,
    1.0 / 15.0,
    1.0 / 17.0,
    1.0 / 19.0,
    1.0 / 21.0,
    1.0 / 23.0,
    1.0 / 25.0,
];
// ln 2 split (fdlibm) so that e·LN2_HI is exact for |e| < 2^11; LN2_LO carries the bits
// beyond f64 (`LN_2 - LN2_HI` would lose ~2e-17·e).
const LN2_HI: f64 = 0.693_147_180_369_123_8;
const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;

/// `ln p` for `p ≥ 0` (also 0 → −∞, +∞ → +∞, NaN → NaN, subnormals exact in the exponent).
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn ln8(p: __m512d) -> __m512d {
    let m = _mm512_getmant_pd::<_MM_MANT_NORM_P75_1P5, _MM_MANT_SIGN_NAN>(p);
    let e = _mm512_getexp_pd(p);
    let below1 = _mm512_cmp_pd_mask::<_CMP_LT_OQ>(m, c(1.0));
    let e = _mm512_mask_add_pd(e, below1, e, c(1.0));
    let f = _mm512_div_pd(_mm512_sub_pd(m, c(1.0)), _mm512_add_pd(m, c(1.0)));
    let s = _mm512_mul_pd(f, f);
    let mut q = c(L[11]);
    for &l in L[..11].iter().rev() {
        q = _mm512_fmadd_pd(q, s, c(l));
    }
    // ln m = 2f + 2f·s·q
    let f2 = _mm512_add_pd(f, f);
    let lnm = _mm512_fmadd_pd(_mm512_mul_pd(f2, s), q, f2);
    let lo = _mm512_fmadd_pd(e, c(LN2_LO), lnm);
    let r = _mm512_fmadd_pd(e, c(LN2_HI), lo);
    let zero = _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(p, _mm512_setzero_pd());
    let inf = _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(p, c(f64::INFINITY));
    let r = _mm512_mask_mov_pd(r, zero, c(f64::NEG_INFINITY));
    _mm512_mask_mov_pd(r, inf, c(f64::INFINITY))
}

/// `Σ_k coef_k z^k` on `NV` vectors (`coef` non-empty).
#[inline(always)]
fn horner(coef: &[C64], zr: &[__m512d; NV], zi: &[__m512d; NV]) -> ([__m512d; NV], [__m512d; NV]) {
    // SAFETY: only reached from avx512f functions (module contract).
    unsafe {
        let last = coef[coef.len() - 1];
        let mut gr = [_mm512_set1_pd(last.re); NV];
        let mut gi = [_mm512_set1_pd(last.im); NV];
        for ak in coef[..coef.len() - 1].iter().rev() {
            let ar = _mm512_set1_pd(ak.re);
            let ai = _mm512_set1_pd(ak.im);
            for j in 0..NV {
                let r = _mm512_fmadd_pd(gr[j], zr[j], _mm512_fnmadd_pd(gi[j], zi[j], ar));
                let i = _mm512_fmadd_pd(gr[j], zi[j], _mm512_fmadd_pd(gi[j], zr[j], ai));
                gr[j] = r;
                gi[j] = i;
            }
        }
        (gr, gi)
    }
}

/// Blocks of the generic kernels' width `W` (sampling): `W / 8` zmm vectors.
const NW: usize = W / 8;
const _: () = assert!(W % 8 == 0);

/// For the sampler's Newton step on `W` points: `z = e^{iπx}`, `g = Σ a_k z^k` and
/// `h = Σ_j b_j z^j` (`b` one shorter than `a`, or empty when `a` has one entry), returned as
/// `(zr, zi, gr, gi, hr, hi)`. Performs per lane exactly the fused operations of
/// `avx2::sincospi` + `avx2::horner2` (and of the portable path), so draws are bit-identical
/// on every level.
///
/// # Safety
/// The CPU must support avx512f (`simd::level() == Avx512`).
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::type_complexity)]
pub(crate) unsafe fn cis_horner2(
    a: &[C64],
    b: &[C64],
    x: &[f64; W],
) -> ([f64; W], [f64; W], [f64; W], [f64; W], [f64; W], [f64; W]) {
    let mut zr = [_mm512_setzero_pd(); NW];
    let mut zi = [_mm512_setzero_pd(); NW];
    for j in 0..NW {
        // SAFETY: offset 8j + 7 < W.
        let xv = unsafe { _mm512_loadu_pd(x.as_ptr().add(8 * j)) };
        (zi[j], zr[j]) = sincospi8(xv);
    }
    let n = a.len() - 1;
    let mut gr = [_mm512_set1_pd(a[n].re); NW];
    let mut gi = [_mm512_set1_pd(a[n].im); NW];
    let hb = if n >= 1 { b[n - 1] } else { C64::default() };
    let mut hr = [_mm512_set1_pd(hb.re); NW];
    let mut hi = [_mm512_set1_pd(hb.im); NW];
    for k in (0..n).rev() {
        let (ar, ai) = (_mm512_set1_pd(a[k].re), _mm512_set1_pd(a[k].im));
        for j in 0..NW {
            let r = _mm512_fmadd_pd(gr[j], zr[j], _mm512_fnmadd_pd(gi[j], zi[j], ar));
            let i = _mm512_fmadd_pd(gr[j], zi[j], _mm512_fmadd_pd(gi[j], zr[j], ai));
            gr[j] = r;
            gi[j] = i;
        }
        if k >= 1 {
            let (br, bi) = (_mm512_set1_pd(b[k - 1].re), _mm512_set1_pd(b[k - 1].im));
            for j in 0..NW {
                let r = _mm512_fmadd_pd(hr[j], zr[j], _mm512_fnmadd_pd(hi[j], zi[j], br));
                let i = _mm512_fmadd_pd(hr[j], zi[j], _mm512_fmadd_pd(hi[j], zr[j], bi));
                hr[j] = r;
                hi[j] = i;
            }
        }
    }
    let st = |v: &[__m512d; NW]| {
        let mut o = [0.0; W];
        for (j, x) in v.iter().enumerate() {
            // SAFETY: offset 8j + 7 < W.
            unsafe { _mm512_storeu_pd(o.as_mut_ptr().add(8 * j), *x) };
        }
        o
    };
    (st(&zr), st(&zi), st(&gr), st(&gi), st(&hr), st(&hi))
}

const PDF: u8 = 0;
const LOGPDF: u8 = 1;
const CDF: u8 = 2;

// expm1 on |r| ≤ ln2/2: Taylor to r^15/15! (< 1e-17 relative), as expm1(r) = r + r²·E(r).
const E: [f64; 14] = [
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
    1.0 / 40_320.0,
    1.0 / 362_880.0,
    1.0 / 3_628_800.0,
    1.0 / 39_916_800.0,
    1.0 / 479_001_600.0,
    1.0 / 6_227_020_800.0,
    1.0 / 87_178_291_200.0,
    1.0 / 1_307_674_368_000.0,
];

/// For `a = |z|`: `(e^{-2a}, expm1(-2a))`, both to a few ulp (relative) for every `a ≥ 0`
/// (`e^{-2a}` underflows gracefully to 0; `+∞` gives `(0, -1)`; NaN gives NaN).
#[inline]
#[target_feature(enable = "avx512f")]
fn exp_expm1_neg2(a: __m512d) -> (__m512d, __m512d) {
    // max returns its second operand on NaN: NaN passes through the clamp.
    let u = _mm512_max_pd(c(-800.0), _mm512_mul_pd(c(-2.0), a));
    let k = _mm512_roundscale_pd::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_pd(u, c(std::f64::consts::LOG2_E)),
    );
    let r = _mm512_fnmadd_pd(k, c(LN2_HI), u);
    let r = _mm512_fnmadd_pd(k, c(LN2_LO), r);
    let mut q = c(E[13]);
    for &v in E[..13].iter().rev() {
        q = _mm512_fmadd_pd(q, r, c(v));
    }
    let p = _mm512_fmadd_pd(_mm512_mul_pd(r, r), q, r); // expm1(r)
    let e = _mm512_scalef_pd(_mm512_add_pd(c(1.0), p), k);
    // k = 0: expm1 is p itself (no cancellation); otherwise |u| > 0.34 and e − 1 is safe.
    let k0 = _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(k, _mm512_setzero_pd());
    let em = _mm512_mask_blend_pd(k0, _mm512_sub_pd(e, c(1.0)), p);
    (e, em)
}

/// One block of `BLOCK` points at `x` into `out`; with `REAL` the points are `y` on the real
/// line, mapped through `x = tanh((y − offset)/scale)` with the Jacobian applied.
#[inline(always)]
fn block<const MODE: u8, const REAL: bool>(ch: &Channel, x: &[f64; BLOCK], out: &mut [f64; BLOCK]) {
    // SAFETY: only reached from avx512f functions (module contract); every pointer offset
    // is below BLOCK = 8·NV.
    unsafe {
        let mut xv = [_mm512_setzero_pd(); NV];
        let mut zv = [_mm512_setzero_pd(); NV];
        let mut ev = [_mm512_setzero_pd(); NV];
        let mut zr = [_mm512_setzero_pd(); NV];
        let mut zi = [_mm512_setzero_pd(); NV];
        let inv_s = 1.0 / ch.scale;
        for j in 0..NV {
            xv[j] = _mm512_loadu_pd(x.as_ptr().add(8 * j));
            if REAL {
                // z = (y − t)/s; tanh|z| = −expm1(−2|z|) / (2 + expm1(−2|z|)).
                let z = _mm512_mul_pd(_mm512_sub_pd(xv[j], c(ch.offset)), c(inv_s));
                let a = _mm512_abs_pd(z);
                let (e, em) = exp_expm1_neg2(a);
                let t = _mm512_div_pd(
                    _mm512_sub_pd(_mm512_setzero_pd(), em),
                    _mm512_add_pd(c(2.0), em),
                );
                // copysign(t, z)
                let sign = _mm512_and_si512(_mm512_castpd_si512(z), _mm512_set1_epi64(i64::MIN));
                xv[j] = _mm512_castsi512_pd(_mm512_or_si512(_mm512_castpd_si512(t), sign));
                zv[j] = a;
                ev[j] = e;
            }
            (zi[j], zr[j]) = sincospi8(xv[j]);
        }
        let mut res = [_mm512_setzero_pd(); NV];
        if MODE == CDF {
            if ch.b.is_empty() {
                for j in 0..NV {
                    let v = _mm512_mul_pd(c(0.5), _mm512_add_pd(xv[j], c(1.0)));
                    // max/min return the second operand on NaN: NaN passes through.
                    res[j] = _mm512_min_pd(c(1.0), _mm512_max_pd(_mm512_setzero_pd(), v));
                }
            } else {
                let (hr, hi) = horner(&ch.b, &zr, &zi);
                let b1 = c(ch.b_at_minus1);
                for j in 0..NV {
                    // Re(z·H(z)) + (x+1)/2 - Re S(-1)
                    let re = _mm512_fmsub_pd(hr[j], zr[j], _mm512_mul_pd(hi[j], zi[j]));
                    let half = _mm512_mul_pd(c(0.5), _mm512_add_pd(xv[j], c(1.0)));
                    let v = _mm512_sub_pd(_mm512_add_pd(half, re), b1);
                    let lo = _mm512_cmp_pd_mask::<_CMP_LE_OQ>(xv[j], c(-1.0));
                    let hi1 = _mm512_cmp_pd_mask::<_CMP_GE_OQ>(xv[j], c(1.0));
                    let v = _mm512_mask_mov_pd(v, lo, _mm512_setzero_pd());
                    let v = _mm512_mask_mov_pd(v, hi1, c(1.0));
                    res[j] = _mm512_min_pd(c(1.0), _mm512_max_pd(_mm512_setzero_pd(), v));
                }
            }
        } else {
            let (gr, gi) = horner(&ch.a, &zr, &zi);
            let log_s = ch.scale.ln();
            for j in 0..NV {
                let p = _mm512_fmadd_pd(gr[j], gr[j], _mm512_mul_pd(gi[j], gi[j]));
                let outside = _mm512_cmp_pd_mask::<_CMP_LT_OQ>(xv[j], c(-1.0))
                    | _mm512_cmp_pd_mask::<_CMP_GT_OQ>(xv[j], c(1.0));
                res[j] = if REAL {
                    let e = ev[j];
                    let ope = _mm512_add_pd(c(1.0), e);
                    if MODE == PDF {
                        // p · sech²(z) / s, sech² = 4e / (1 + e)².
                        let sech2 =
                            _mm512_div_pd(_mm512_mul_pd(c(4.0), e), _mm512_mul_pd(ope, ope));
                        _mm512_mul_pd(_mm512_mul_pd(p, sech2), c(inv_s))
                    } else {
                        // ln p + 2(ln 2 − |z| − ln1p(e)) − ln s; ln1p(e) = ln(1+e) + the
                        // rounding error of 1+e divided by 1+e.
                        let corr = _mm512_div_pd(_mm512_sub_pd(e, _mm512_sub_pd(ope, c(1.0))), ope);
                        let l1p = _mm512_add_pd(ln8(ope), corr);
                        let ls2 = _mm512_mul_pd(
                            c(2.0),
                            _mm512_sub_pd(_mm512_sub_pd(c(LN_2), zv[j]), l1p),
                        );
                        _mm512_sub_pd(_mm512_add_pd(ln8(p), ls2), c(log_s))
                    }
                } else if MODE == PDF {
                    _mm512_mask_mov_pd(p, outside, _mm512_setzero_pd())
                } else {
                    _mm512_mask_mov_pd(ln8(p), outside, c(f64::NEG_INFINITY))
                };
            }
        }
        for (j, r) in res.iter().enumerate() {
            _mm512_storeu_pd(out.as_mut_ptr().add(8 * j), *r);
        }
    }
}

#[inline(always)]
fn row_mode<const MODE: u8, const REAL: bool>(ch: &Channel, x: &[f64], out: &mut [f64]) {
    let mut xs = x.chunks_exact(BLOCK);
    let mut os = out.chunks_exact_mut(BLOCK);
    for (xb, ob) in (&mut xs).zip(&mut os) {
        let xb: &[f64; BLOCK] = xb.try_into().expect("chunk of BLOCK");
        let ob: &mut [f64; BLOCK] = ob.try_into().expect("chunk of BLOCK");
        block::<MODE, REAL>(ch, xb, ob);
    }
    let rest = xs.remainder();
    if !rest.is_empty() {
        let mut xb = [0.0; BLOCK];
        let mut ob = [0.0; BLOCK];
        xb[..rest.len()].copy_from_slice(rest);
        block::<MODE, REAL>(ch, &xb, &mut ob);
        let n = rest.len();
        os.into_remainder().copy_from_slice(&ob[..n]);
    }
}

/// `pdf` (`MODE` 0), `logpdf` (1) or `cdf` (2) of one channel; `real` selects the real-line
/// domain (points `y`), otherwise the interval (points `x`).
///
/// # Safety
/// The CPU must support avx512f (`simd::level() == Avx512`).
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn row(ch: &Channel, real: bool, mode: u8, x: &[f64], out: &mut [f64]) {
    debug_assert_eq!(x.len(), out.len());
    match (mode, real) {
        (PDF, false) => row_mode::<PDF, false>(ch, x, out),
        (LOGPDF, false) => row_mode::<LOGPDF, false>(ch, x, out),
        (_, false) => row_mode::<CDF, false>(ch, x, out),
        (PDF, true) => row_mode::<PDF, true>(ch, x, out),
        (LOGPDF, true) => row_mode::<LOGPDF, true>(ch, x, out),
        (_, true) => row_mode::<CDF, true>(ch, x, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cis_horner2_is_bit_identical_to_avx2_and_portable() {
        if !std::arch::is_x86_feature_detected!("avx512f")
            || !std::arch::is_x86_feature_detected!("fma")
        {
            return;
        }
        let mut s = crate::rng::Stream::new(5, 0);
        for n in [0usize, 1, 2, 13, 32, 100] {
            let a: Vec<C64> = (0..=n).map(|_| C64::new(s.normal(), s.normal())).collect();
            let b: Vec<C64> = (0..n).map(|_| C64::new(s.normal(), s.normal())).collect();
            for rep in 0..50 {
                let mut x = [0.0; W];
                for (l, v) in x.iter_mut().enumerate() {
                    *v = match (rep + l) % 17 {
                        0 => f64::NAN,
                        1 => 1.0,
                        2 => -1.0,
                        3 => 0.5,
                        _ => 2.4 * s.next_f64() - 1.2,
                    };
                }
                // SAFETY: avx512f (hence avx2 on every such CPU) and fma detected above.
                let got = unsafe { cis_horner2(&a, &b, &x) };
                // SAFETY: as above.
                let (si, co) = unsafe { super::super::avx2::sincospi(&x) };
                // SAFETY: as above.
                let (gr, gi, hr, hi) = unsafe { super::super::avx2::horner2(&a, &b, &co, &si) };
                let bits = |v: &[f64; W]| v.map(f64::to_bits);
                assert_eq!(bits(&got.0), bits(&co), "n={n}");
                assert_eq!(bits(&got.1), bits(&si), "n={n}");
                assert_eq!(bits(&got.2), bits(&gr), "n={n}");
                assert_eq!(bits(&got.3), bits(&gi), "n={n}");
                assert_eq!(bits(&got.4), bits(&hr), "n={n}");
                assert_eq!(bits(&got.5), bits(&hi), "n={n}");
                for l in 0..W {
                    let (ps, pc) = super::super::eval::sincospi::<true>(x[l]);
                    assert_eq!(
                        (ps.to_bits(), pc.to_bits()),
                        (si[l].to_bits(), co[l].to_bits())
                    );
                }
            }
        }
    }

    #[test]
    fn exp_expm1_and_tanh_match_libm() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        let mut xs: Vec<f64> = vec![0.0, 1e-300, 4.9e-324, 1e-8, 0.17, 0.1733, 0.35, 0.5, 19.0];
        xs.extend([
            300.0,
            372.0,
            380.0,
            400.0,
            1e4,
            f64::MAX,
            f64::INFINITY,
            f64::NAN,
        ]);
        for i in 0..20000 {
            xs.push(i as f64 / 500.0);
            xs.push((i as f64 / 1000.0 - 12.0).exp());
        }
        while xs.len() % 8 != 0 {
            xs.push(1.0);
        }
        let rel = |g: f64, w: f64| {
            if w == 0.0 || w.is_infinite() {
                if g == w {
                    0.0
                } else {
                    1.0
                }
            } else {
                ((g - w) / w).abs()
            }
        };
        for ch in xs.chunks(8) {
            let (mut e, mut em) = ([0.0; 8], [0.0; 8]);
            // SAFETY: avx512f detected above.
            unsafe {
                let (a, b) = exp_expm1_neg2(_mm512_loadu_pd(ch.as_ptr()));
                _mm512_storeu_pd(e.as_mut_ptr(), a);
                _mm512_storeu_pd(em.as_mut_ptr(), b);
            }
            for l in 0..8 {
                let a = ch[l];
                if a.is_nan() {
                    assert!(e[l].is_nan() && em[l].is_nan());
                    continue;
                }
                let we = (-2.0 * a).exp();
                let wm = (-2.0 * a).exp_m1();
                // Relative, except in the subnormal range of e^{-2a} (absolute there).
                let ee = if we < 1e-300 {
                    (e[l] - we).abs() / 1e-300
                } else {
                    rel(e[l], we)
                };
                assert!(ee <= 5e-16, "exp(-2·{a}) = {} libm {we}", e[l]);
                assert!(
                    rel(em[l], wm) <= 5e-16,
                    "expm1(-2·{a}) = {} libm {wm}",
                    em[l]
                );
                let t = -em[l] / (2.0 + em[l]);
                assert!(
                    rel(t, a.tanh()) <= 6e-16,
                    "tanh({a}) = {t} libm {}",
                    a.tanh()
                );
            }
        }
    }

    #[test]
    fn ln8_matches_libm() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        let mut xs: Vec<f64> = vec![
            0.0,
            f64::MIN_POSITIVE,
            4.9e-324,
            1e-310,
            0.75,
            1.0,
            1.5,
            2.0,
            1.0 - 1e-16,
            1.0 + 2e-16,
            f64::MAX,
            f64::INFINITY,
            f64::NAN,
        ];
        let mut v = 1e-300;
        while v < 1e300 {
            xs.push(v);
            v *= 1.37;
        }
        for i in 0..10000 {
            xs.push(0.5 + i as f64 / 5000.0);
        }
        while xs.len() % 8 != 0 {
            xs.push(1.0);
        }
        for ch in xs.chunks(8) {
            let mut got = [0.0; 8];
            // SAFETY: avx512f detected above.
            unsafe {
                let r = ln8(_mm512_loadu_pd(ch.as_ptr()));
                _mm512_storeu_pd(got.as_mut_ptr(), r);
            }
            for (g, &x) in got.iter().zip(ch) {
                let want = x.ln();
                if want.is_nan() {
                    assert!(g.is_nan(), "{x}");
                } else if want.is_infinite() {
                    assert_eq!(*g, want, "{x}");
                } else {
                    let err = (g - want).abs();
                    assert!(err <= 5e-16 * want.abs(), "ln({x}) = {g}, libm {want}");
                }
            }
        }
    }
}
