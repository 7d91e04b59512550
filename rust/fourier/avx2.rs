//! Hand-written AVX2+FMA kernels for blocks of `W` points (`W/4` 4-wide vectors).
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

/// 4-wide vectors per block.
const NV: usize = W / 4;
const _: () = assert!(W % 4 == 0);

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn load(v: &[f64; W]) -> [__m256d; NV] {
    let mut out = [_mm256_setzero_pd(); NV];
    for (j, o) in out.iter_mut().enumerate() {
        // SAFETY: `v` holds W = 4·NV f64, so offset 4j + 3 is in bounds.
        *o = unsafe { _mm256_loadu_pd(v.as_ptr().add(4 * j)) };
    }
    out
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn store(v: [__m256d; NV]) -> [f64; W] {
    let mut out = [0.0; W];
    for (j, x) in v.iter().enumerate() {
        // SAFETY: `out` holds W = 4·NV f64.
        unsafe { _mm256_storeu_pd(out.as_mut_ptr().add(4 * j), *x) };
    }
    out
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn sincospi4(x: __m256d) -> (__m256d, __m256d) {
    use super::eval::{C1, C2, C3, C4, C5, C6, C7, C8, S1, S2, S3, S4, S5, S6, S7};
    let half = _mm256_set1_pd(0.5);
    let k =
        _mm256_round_pd::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_add_pd(x, x));
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
    let q = _mm256_fnmadd_pd(c(4.0), _mm256_floor_pd(_mm256_mul_pd(k, c(0.25))), k);
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

/// `(sin πx, cos πx)` for a block; same polynomial as [`super::eval::sincospi`].
#[inline]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn sincospi(x: &[f64; W]) -> ([f64; W], [f64; W]) {
    // SAFETY: caller guarantees avx2+fma (this fn's contract).
    unsafe {
        let xv = load(x);
        let mut s = [_mm256_setzero_pd(); NV];
        let mut c = [_mm256_setzero_pd(); NV];
        for j in 0..NV {
            (s[j], c[j]) = sincospi4(xv[j]);
        }
        (store(s), store(c))
    }
}

/// One complex Horner step on two vectors: `g ← g·z + a`.
#[inline(always)]
unsafe fn step(
    gr: &mut [__m256d; NV],
    gi: &mut [__m256d; NV],
    zr: &[__m256d; NV],
    zi: &[__m256d; NV],
    ar: __m256d,
    ai: __m256d,
) {
    for j in 0..NV {
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
        let (zr, zi) = (load(zr), load(zi));
        let last = coef[coef.len() - 1];
        let mut gr = [_mm256_set1_pd(last.re); NV];
        let mut gi = [_mm256_set1_pd(last.im); NV];
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
        (store(gr), store(gi))
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
        let (zr, zi) = (load(zr), load(zi));
        let n = a.len() - 1;
        let mut gr = [_mm256_set1_pd(a[n].re); NV];
        let mut gi = [_mm256_set1_pd(a[n].im); NV];
        let hb = if n >= 1 { b[n - 1] } else { C64::default() };
        let mut hr = [_mm256_set1_pd(hb.re); NV];
        let mut hi = [_mm256_set1_pd(hb.im); NV];
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
        (store(gr), store(gi), store(hr), store(hi))
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
        let (u_r, u_i, z_r, z_i) = (load(ur), load(ui), load(zr), load(zi));
        let mut pr = [_mm256_set1_pd(1.0); NV];
        let mut pi = [_mm256_setzero_pd(); NV];
        for (ar, ai) in acc_re.iter_mut().zip(acc_im.iter_mut()) {
            let mut r = load(ar);
            let mut i = load(ai);
            for j in 0..NV {
                r[j] = _mm256_fmadd_pd(u_r[j], pr[j], _mm256_fnmadd_pd(u_i[j], pi[j], r[j]));
                i[j] = _mm256_fmadd_pd(u_r[j], pi[j], _mm256_fmadd_pd(u_i[j], pr[j], i[j]));
                // p ← p·conj(z)
                let nr = _mm256_fmadd_pd(pr[j], z_r[j], _mm256_mul_pd(pi[j], z_i[j]));
                let ni = _mm256_fmsub_pd(pi[j], z_r[j], _mm256_mul_pd(pr[j], z_i[j]));
                pr[j] = nr;
                pi[j] = ni;
            }
            *ar = store(r);
            *ai = store(i);
        }
    }
}
