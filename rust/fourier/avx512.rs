//! AVX-512F kernels for `pdf` / `logpdf` / `cdf` on the interval domain.
//!
//! A block is `NV` 8-wide vectors (`BLOCK = 8·NV` points) kept in `zmm` registers from the
//! load of `x` to the store of the result: `sincospi`, complex Horner, `|g|²` (or `ln`, or the
//! CDF's `Re(z·H)`), support masks. Every function here must only be called after
//! `simd::level()` reported Avx512 (which implies avx512f, avx2 and fma).
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
// ln 2 split so that e·LN2_HI is exact for |e| < 2^11.
const LN2_HI: f64 = 0.693_147_180_369_123_8;
const LN2_LO: f64 = LN_2 - LN2_HI;

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

/// One block of `BLOCK` points at `x` into `out`.
#[inline(always)]
fn block<const MODE: u8>(ch: &Channel, x: &[f64; BLOCK], out: &mut [f64; BLOCK]) {
    // SAFETY: only reached from avx512f functions (module contract); every pointer offset
    // is below BLOCK = 8·NV.
    unsafe {
        let mut xv = [_mm512_setzero_pd(); NV];
        let mut zr = [_mm512_setzero_pd(); NV];
        let mut zi = [_mm512_setzero_pd(); NV];
        for j in 0..NV {
            xv[j] = _mm512_loadu_pd(x.as_ptr().add(8 * j));
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
            for j in 0..NV {
                let p = _mm512_fmadd_pd(gr[j], gr[j], _mm512_mul_pd(gi[j], gi[j]));
                let outside = _mm512_cmp_pd_mask::<_CMP_LT_OQ>(xv[j], c(-1.0))
                    | _mm512_cmp_pd_mask::<_CMP_GT_OQ>(xv[j], c(1.0));
                res[j] = if MODE == PDF {
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
fn row_mode<const MODE: u8>(ch: &Channel, x: &[f64], out: &mut [f64]) {
    let mut xs = x.chunks_exact(BLOCK);
    let mut os = out.chunks_exact_mut(BLOCK);
    for (xb, ob) in (&mut xs).zip(&mut os) {
        let xb: &[f64; BLOCK] = xb.try_into().expect("chunk of BLOCK");
        let ob: &mut [f64; BLOCK] = ob.try_into().expect("chunk of BLOCK");
        block::<MODE>(ch, xb, ob);
    }
    let rest = xs.remainder();
    if !rest.is_empty() {
        let mut xb = [0.0; BLOCK];
        let mut ob = [0.0; BLOCK];
        xb[..rest.len()].copy_from_slice(rest);
        block::<MODE>(ch, &xb, &mut ob);
        let n = rest.len();
        os.into_remainder().copy_from_slice(&ob[..n]);
    }
}

/// `pdf` (`MODE` 0), `logpdf` (1) or `cdf` (2) of one interval-domain channel.
///
/// # Safety
/// The CPU must support avx512f (`simd::level() == Avx512`).
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn row_interval(ch: &Channel, mode: u8, x: &[f64], out: &mut [f64]) {
    debug_assert_eq!(x.len(), out.len());
    match mode {
        PDF => row_mode::<PDF>(ch, x, out),
        LOGPDF => row_mode::<LOGPDF>(ch, x, out),
        _ => row_mode::<CDF>(ch, x, out),
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
