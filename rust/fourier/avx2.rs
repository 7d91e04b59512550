//! Hand-written AVX2+FMA kernels for blocks of 8 points (two 4-wide vectors).
//!
//! LLVM vectorises the generic lane loops in small functions, but once they are inlined into
//! the Newton solver or the gradient loop it falls back to scalar code with spills (measured:
//! ~5× slower), so the hot pieces are spelled out with intrinsics. Every function here must
//! only be called after `simd::level()` reported Avx2 or better.

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;
use std::f64::consts::PI;

use super::eval::W;
use super::model::C64;

const _: () = assert!(W == 8);

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn load(v: &[f64; W]) -> (__m256d, __m256d) {
    // SAFETY: `v` holds 8 f64; unaligned loads of 4 at offsets 0 and 4 stay in bounds.
    unsafe { (_mm256_loadu_pd(v.as_ptr()), _mm256_loadu_pd(v.as_ptr().add(4))) }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn store(a: __m256d, b: __m256d) -> [f64; W] {
    let mut out = [0.0; W];
    // SAFETY: `out` holds 8 f64.
    unsafe {
        _mm256_storeu_pd(out.as_mut_ptr(), a);
        _mm256_storeu_pd(out.as_mut_ptr().add(4), b);
    }
    out
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn sincospi4(x: __m256d) -> (__m256d, __m256d) {
    use super::eval::{C1, C2, C3, C4, C5, C6, C7, C8, S1, S2, S3, S4, S5, S6, S7};
    let half = _mm256_set1_pd(0.5);
    let k = _mm256_round_pd::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm256_add_pd(x, x),
    );
    let r = _mm256_fnmadd_pd(half, k, x);
    let t = _mm256_mul_pd(_mm256_set1_pd(PI), r);
    let t2 = _mm256_mul_pd(t, t);
    let c = |v: f64| _mm256_set1_pd(v);
    let mut ps = _mm256_fmadd_pd(c(S7), t2, c(S6));
    ps = _mm256_fmadd_pd(ps, t2, c(S5));
    ps = _mm256_fmadd_pd(ps, t2, c(S4));
    ps = _mm256_fmadd_pd(ps, t2, c(S3));
    ps = _mm256_fmadd_pd(ps, t2, c(S2));
    ps = _mm256_fmadd_pd(ps, t2, c(S1));
    let s = _mm256_fmadd_pd(_mm256_mul_pd(t, t2), ps, t);
    let mut pc = _mm256_fmadd_pd(c(C8), t2, c(C7));
    pc = _mm256_fmadd_pd(pc, t2, c(C6));
    pc = _mm256_fmadd_pd(pc, t2, c(C5));
    pc = _mm256_fmadd_pd(pc, t2, c(C4));
    pc = _mm256_fmadd_pd(pc, t2, c(C3));
    pc = _mm256_fmadd_pd(pc, t2, c(C2));
    pc = _mm256_fmadd_pd(pc, t2, c(C1));
    let co = _mm256_fmadd_pd(t2, pc, c(1.0));
    // q = k mod 4 ∈ {0, 1, 2, 3}
    let q = _mm256_fnmadd_pd(
        c(4.0),
        _mm256_floor_pd(_mm256_mul_pd(k, c(0.25))),
        k,
    );
    let is1 = _mm256_cmp_pd::<_CMP_EQ_OQ>(q, c(1.0));
    let is2 = _mm256_cmp_pd::<_CMP_EQ_OQ>(q, c(2.0));
    let is3 = _mm256_cmp_pd::<_CMP_EQ_OQ>(q, c(3.0));
    let odd = _mm256_or_pd(is1, is3);
    let s1 = _mm256_blendv_pd(s, co, odd);
    let c1 = _mm256_blendv_pd(co, s, odd);
    let sign = c(-0.0);
    let sin = _mm256_xor_pd(s1, _mm256_and_pd(_mm256_or_pd(is2, is3), sign));
    let cos = _mm256_xor_pd(c1, _mm256_and_pd(_mm256_or_pd(is1, is2), sign));
    (sin, cos)
}

/// `(sin πx, cos πx)` for 8 points; same polynomial as [`super::eval::sincospi`].
#[inline]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn sincospi(x: &[f64; W]) -> ([f64; W], [f64; W]) {
    // SAFETY: caller guarantees avx2+fma (this fn's contract).
    unsafe {
        let (x0, x1) = load(x);
        let (s0, c0) = sincospi4(x0);
        let (s1, c1) = sincospi4(x1);
        (store(s0, s1), store(c0, c1))
    }
}

/// One complex Horner step on two vectors: `g ← g·z + a`.
#[inline(always)]
unsafe fn step(
    gr: &mut [__m256d; 2],
    gi: &mut [__m256d; 2],
    zr: &[__m256d; 2],
    zi: &[__m256d; 2],
    ar: __m256d,
    ai: __m256d,
) {
    for j in 0..2 {
        // SAFETY: only reached from avx2+fma functions below.
        unsafe {
            let r = _mm256_fmadd_pd(gr[j], zr[j], _mm256_fnmadd_pd(gi[j], zi[j], ar));
            let i = _mm256_fmadd_pd(gr[j], zi[j], _mm256_fmadd_pd(gi[j], zr[j], ai));
            gr[j] = r;
            gi[j] = i;
        }
    }
}

/// `Σ_k coef_k z^k` for 8 points given `z = (zr, zi)`.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn horner(coef: &[C64], zr: &[f64; W], zi: &[f64; W]) -> ([f64; W], [f64; W]) {
    // SAFETY: caller guarantees avx2+fma.
    unsafe {
        let (a0, a1) = load(zr);
        let (b0, b1) = load(zi);
        let (zr, zi) = ([a0, a1], [b0, b1]);
        let last = coef[coef.len() - 1];
        let mut gr = [_mm256_set1_pd(last.re); 2];
        let mut gi = [_mm256_set1_pd(last.im); 2];
        for ak in coef[..coef.len() - 1].iter().rev() {
            step(
                &mut gr,
                &mut gi,
                &zr,
                &zi,
                _mm256_set1_pd(ak.re),
                _mm256_set1_pd(ak.im),
            );
        }
        (store(gr[0], gr[1]), store(gi[0], gi[1]))
    }
}

/// Two polynomials at once (independent chains interleaved): `Σ a_k z^k` over `a` and
/// `Σ_j b_j z^j` over `b`, where `b.len() == a.len() - 1` (or both of length 1 and `b`
/// empty). Returns `(g_re, g_im, h_re, h_im)`.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn horner2(
    a: &[C64],
    b: &[C64],
    zr: &[f64; W],
    zi: &[f64; W],
) -> ([f64; W], [f64; W], [f64; W], [f64; W]) {
    // SAFETY: caller guarantees avx2+fma.
    unsafe {
        let (a0, a1) = load(zr);
        let (b0, b1) = load(zi);
        let (zr, zi) = ([a0, a1], [b0, b1]);
        let n = a.len() - 1;
        let mut gr = [_mm256_set1_pd(a[n].re); 2];
        let mut gi = [_mm256_set1_pd(a[n].im); 2];
        let hb = if n >= 1 { b[n - 1] } else { C64::default() };
        let mut hr = [_mm256_set1_pd(hb.re); 2];
        let mut hi = [_mm256_set1_pd(hb.im); 2];
        for k in (0..n).rev() {
            step(
                &mut gr,
                &mut gi,
                &zr,
                &zi,
                _mm256_set1_pd(a[k].re),
                _mm256_set1_pd(a[k].im),
            );
            if k >= 1 {
                step(
                    &mut hr,
                    &mut hi,
                    &zr,
                    &zi,
                    _mm256_set1_pd(b[k - 1].re),
                    _mm256_set1_pd(b[k - 1].im),
                );
            }
        }
        (
            store(gr[0], gr[1]),
            store(gi[0], gi[1]),
            store(hr[0], hr[1]),
            store(hi[0], hi[1]),
        )
    }
}

/// Accumulates `acc_k += u·conj(z)^k` for `k = 0..acc.len()` over 8 lanes (gradient of the
/// NLL w.r.t. the coefficients).
#[inline]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn accumulate_powers(
    acc_re: &mut [[f64; W]],
    acc_im: &mut [[f64; W]],
    ur: &[f64; W],
    ui: &[f64; W],
    zr: &[f64; W],
    zi: &[f64; W],
) {
    // SAFETY: caller guarantees avx2+fma; every row of acc_* holds 8 f64.
    unsafe {
        let (ur0, ur1) = load(ur);
        let (ui0, ui1) = load(ui);
        let (zr0, zr1) = load(zr);
        let (zi0, zi1) = load(zi);
        let (u_r, u_i, z_r, z_i) = ([ur0, ur1], [ui0, ui1], [zr0, zr1], [zi0, zi1]);
        let mut pr = [_mm256_set1_pd(1.0); 2];
        let mut pi = [_mm256_setzero_pd(); 2];
        for (ar, ai) in acc_re.iter_mut().zip(acc_im.iter_mut()) {
            let (r0, r1) = load(ar);
            let (i0, i1) = load(ai);
            let mut r = [r0, r1];
            let mut i = [i0, i1];
            for j in 0..2 {
                r[j] = _mm256_fmadd_pd(u_r[j], pr[j], _mm256_fnmadd_pd(u_i[j], pi[j], r[j]));
                i[j] = _mm256_fmadd_pd(u_r[j], pi[j], _mm256_fmadd_pd(u_i[j], pr[j], i[j]));
                // p ← p·conj(z)
                let nr = _mm256_fmadd_pd(pr[j], z_r[j], _mm256_mul_pd(pi[j], z_i[j]));
                let ni = _mm256_fmsub_pd(pi[j], z_r[j], _mm256_mul_pd(pr[j], z_i[j]));
                pr[j] = nr;
                pi[j] = ni;
            }
            *ar = store(r[0], r[1]);
            *ai = store(i[0], i[1]);
        }
    }
}
