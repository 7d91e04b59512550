//! Sparse (top-k) softmax: softmax over the k largest entries, zero elsewhere.
//!
//! Selection for k ≤ 32 (rows of at least 128) is bounded: the k-th largest of the maxima of 64
//! disjoint groups of the row bounds the row's k-th largest value from below, so only the
//! entries at or above it (about 1% of a random row) need sorting (`select_bounded`). Larger
//! k keeps the k best `(value, index)` pairs seen so far in a sorted buffer and only touches the
//! buffer for entries above its current k-th value; an adversarial order (increasing values)
//! would make that `O(n k)`, so after a budget of insertions the row falls back to introselect
//! (`select_nth_unstable`, worst-case linear). Ties at the k-th value go to the lower index.
//!
//! Special values follow softmax on the selected entries: NaN anywhere → NaN row; `+∞` entries
//! (if selected) share the mass; if every selected entry is `−∞` the row is NaN.
//!
//! Performance notes (2-vCPU Sapphire Rapids VM shared with other jobs, float32 4096×1024, k=10,
//! one thread, side by side with `torch.topk + softmax + scatter` in one process):
//! * Before: 1.29× torch (LTO wheel). The time went to the insertion buffer (`Vec::insert`
//!   memmoves, ~15%), a separate NaN pass, the chunk filter compiled without AVX, `out.fill`,
//!   and k libm `exp` calls per row (~10%).
//! * Bounded selection with the group-maxima pass doing the NaN check (AVX-512 unordered
//!   compare on pairs of vectors) and the exponentials through the vector `exp` kernel:
//!   2.7× torch; the scalar insertion that found the k-th largest of the 64 maxima was then
//!   ~0.7 µs of ~2.2 µs per row (mispredicted branches). Counting ranks with vector compares
//!   (first over 16 lane-wise maxima, then over the few maxima above that) made it ~0.1 µs.
//! * Zeroing the output inside the candidate pass (masked vector stores, output prefetched for
//!   writing a row ahead) with the candidates gathered by `vcompressps`/`vpcompressd` and, when
//!   at most 16, ranked by counting: 5.1 ms vs torch 24.7–32 ms (≥ 4.8×), `np.copyto` of the
//!   same array 1.8–2.1 ms. Zeroing 16 MiB alone costs ~1.2–1.8 ms (read-for-ownership).
//! * AVX2 and scalar levels use the same bounded algorithm with portable (auto-vectorised)
//!   passes and the scalar k-th-largest: 2.5× torch at the AVX2 level.

use ndarray::{ArrayViewD, ArrayViewMutD};

use super::layout::{map_rows, Params, RowSpec};
use super::{exp, kern, softmax, Float};
use crate::error::Result;
use crate::simd::{level, Level};

pub(crate) fn check_k(k: &Params<'_>, n_rows: usize) -> Result<()> {
    k.check(
        n_rows,
        "k",
        |v| v >= 1.0 && v.fract() == 0.0,
        "a positive integer",
    )
}

/// The indices of the k largest entries (ties to the lower index), in `sel`, largest first,
/// with their values in `vals`. Requires a NaN-free row.
#[cfg(test)]
pub(crate) fn select_topk<T: Float>(x: &[T], k: usize, sel: &mut Vec<u32>, vals: &mut Vec<f64>) {
    let mut out = vec![T::ZERO; x.len()];
    let ok = select_topk_checked(x, k, sel, vals, &mut Vec::new(), &mut out);
    debug_assert!(ok, "select_topk needs a NaN-free row");
}

/// Groups the bound of [`select_bounded`] is taken over.
const GROUPS: usize = 64;

/// Like [`select_topk`] but checks for NaN itself (returning `false`, `sel`/`vals`
/// unspecified) so that the AVX-512 path can fold that check into its first pass over the row;
/// on success `out` (the row's output, same length as `x`) is left all zeros, written during
/// the selection where that saves a pass. `cand` is scratch.
pub(crate) fn select_topk_checked<T: Float>(
    x: &[T],
    k: usize,
    sel: &mut Vec<u32>,
    vals: &mut Vec<f64>,
    cand: &mut Vec<(f64, u32)>,
    out: &mut [T],
) -> bool {
    let n = x.len();
    sel.clear();
    vals.clear();
    if k <= GROUPS / 2 && k < n && n >= 2 * GROUPS {
        return select_bounded(x, k, sel, vals, cand, out, avx512());
    }
    if kern::find_nan(x).is_some() {
        return false;
    }
    if k >= n {
        sel.extend(0..n as u32);
        vals.extend(x.iter().map(|v| v.to_f64()));
    } else {
        select_insertion(x, k, sel, vals, cand);
    }
    out.fill(T::ZERO);
    true
}

/// Selection for small k: the k-th largest of the maxima of 64 disjoint groups of the row is a
/// lower bound `L` on the row's k-th largest value (those k maxima are k distinct elements
/// ≥ `L`), so every selected entry is among the candidates `x ≥ L`. One vector pass takes the
/// group maxima (and checks for NaN), a second one, over a row that is now in L1, collects the
/// candidates (for random rows about 1% of them: the bound is tight) and zeroes `out`, and a
/// selection among the candidates finishes. Linear in the worst case too (a row of equal
/// values makes every entry a candidate and the last step `select_nth_unstable`).
fn select_bounded<T: Float>(
    x: &[T],
    k: usize,
    sel: &mut Vec<u32>,
    vals: &mut Vec<f64>,
    cand: &mut Vec<(f64, u32)>,
    out: &mut [T],
    simd: bool,
) -> bool {
    let mut g = [T::NEG_INFINITY; GROUPS];
    if !group_max(x, &mut g, simd) {
        return false;
    }
    let bound = kth_largest(&g, k, simd);
    #[cfg(target_arch = "x86_64")]
    if simd {
        if let (Some(x32), Some(o32)) = (kern::cast::<T, f32>(x), kern::cast_mut::<T, f32>(out)) {
            // SAFETY: `simd` is only true when AVX-512F and POPCNT were detected; `x32` and
            // `o32` have the same length (the row and its output).
            let done =
                unsafe { avx512::collect_rank_f32(x32, bound.to_f64() as f32, k, o32, sel, vals) };
            if done {
                return true;
            }
        }
    }
    cand.clear();
    collect_at_least(x, bound, cand, simd);
    if cand.len() <= 4 * GROUPS {
        // The usual case: a handful of candidates, already in index order, so a stable
        // insertion sort by descending value leaves ties in ascending index order.
        for i in 1..cand.len() {
            let c = cand[i];
            let mut j = i;
            while j > 0 && cand[j - 1].0 < c.0 {
                cand[j] = cand[j - 1];
                j -= 1;
            }
            cand[j] = c;
        }
        cand.truncate(k);
    } else {
        // Many ties with the bound (or a row of mostly −∞): linear selection first.
        cand.select_nth_unstable_by(k - 1, by_value_then_index);
        cand.truncate(k);
        cand.sort_unstable_by(by_value_then_index);
    }
    for &(v, i) in cand.iter() {
        vals.push(v);
        sel.push(i);
    }
    out.fill(T::ZERO);
    true
}

/// The k-th largest of the group maxima (`k ≤ GROUPS / 2`, no NaN).
fn kth_largest<T: Float>(g: &[T; GROUPS], k: usize, simd: bool) -> T {
    #[cfg(target_arch = "x86_64")]
    if simd && k <= 16 {
        if let Some(g32) = kern::cast::<T, f32>(&g[..]) {
            // SAFETY: `simd` is only true when AVX-512F and POPCNT were detected at run time.
            let r = unsafe { avx512::kth_largest_f32(g32.try_into().expect("64 groups"), k) };
            if let Some(r) = r {
                return T::from_f64(r as f64);
            }
        }
    }
    kth_largest_portable(g, k)
}

/// Insertion into a sorted buffer of the k largest: for 64 values cheaper than a general
/// selection.
fn kth_largest_portable<T: Float>(g: &[T; GROUPS], k: usize) -> T {
    let mut top = [T::NEG_INFINITY; GROUPS / 2];
    let top = &mut top[..k];
    for &v in g {
        if v > top[k - 1] {
            let mut j = k - 1;
            while j > 0 && top[j - 1] < v {
                top[j] = top[j - 1];
                j -= 1;
            }
            top[j] = v;
        }
    }
    top[k - 1]
}

/// The AVX-512 selection kernels also count mask bits with POPCNT (which every AVX-512 CPU
/// has, but the level does not promise it).
#[inline(always)]
fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        level() == Level::Avx512 && std::arch::is_x86_feature_detected!("popcnt")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Group maxima of `x` into `g` (initialised to −∞ by the caller); `false` if `x` holds a NaN.
/// `simd` (only true when AVX-512F was detected) selects the AVX-512 kernels.
fn group_max<T: Float>(x: &[T], g: &mut [T; GROUPS], simd: bool) -> bool {
    #[cfg(target_arch = "x86_64")]
    if simd {
        if let (Some(x), Some(g)) = (
            kern::cast::<T, f32>(x),
            kern::cast_mut::<T, f32>(&mut g[..]),
        ) {
            // SAFETY: `simd` is only true when AVX-512F and POPCNT were detected at run time.
            return unsafe { avx512::group_max_f32(x, g.try_into().expect("64 groups")) };
        }
        if let (Some(x), Some(g)) = (
            kern::cast::<T, f64>(x),
            kern::cast_mut::<T, f64>(&mut g[..]),
        ) {
            // SAFETY: as above.
            return unsafe { avx512::group_max_f64(x, g.try_into().expect("64 groups")) };
        }
    }
    #[cfg(target_arch = "x86_64")]
    if level() >= Level::Avx2 {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<T: Float>(x: &[T], g: &mut [T; GROUPS]) -> bool {
            group_max_portable(x, g)
        }
        // SAFETY: the level is only Avx2/Avx512 when the CPU has AVX2 and FMA.
        return unsafe { avx2(x, g) };
    }
    group_max_portable(x, g)
}

/// `(x[i], i)` for every `x[i] ≥ t`, in index order, appended to `cand`.
fn collect_at_least<T: Float>(x: &[T], t: T, cand: &mut Vec<(f64, u32)>, simd: bool) {
    #[cfg(target_arch = "x86_64")]
    if simd {
        if let Some(x) = kern::cast::<T, f32>(x) {
            // SAFETY: `simd` is only true when AVX-512F and POPCNT were detected at run time.
            return unsafe { avx512::collect_f32(x, t.to_f64() as f32, cand) };
        }
        if let Some(x) = kern::cast::<T, f64>(x) {
            // SAFETY: as above.
            return unsafe { avx512::collect_f64(x, t.to_f64(), cand) };
        }
    }
    #[cfg(target_arch = "x86_64")]
    if level() >= Level::Avx2 {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<T: Float>(x: &[T], t: T, cand: &mut Vec<(f64, u32)>) {
            collect_at_least_portable(x, t, cand)
        }
        // SAFETY: the level is only Avx2/Avx512 when the CPU has AVX2 and FMA.
        return unsafe { avx2(x, t, cand) };
    }
    collect_at_least_portable(x, t, cand)
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    //! The two passes of the bounded selection with AVX-512F: four 16-lane (f32) or 8-lane
    //! (f64) accumulators, NaN detected with one unordered compare per two vectors, candidates
    //! found by a compare into a mask and its set bits.
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f,avx2,fma,popcnt")]
    pub(super) unsafe fn group_max_f32(x: &[f32], g: &mut [f32; 64]) -> bool {
        let n = x.len();
        let p = x.as_ptr();
        let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
        let (mut a0, mut a1, mut a2, mut a3) = (ninf, ninf, ninf, ninf);
        let mut nan: __mmask16 = 0;
        let mut i = 0;
        while i + 64 <= n {
            // The row comes from memory: fetch 8 KiB ahead (the row after next of a
            // 1024-wide array), as the softmax kernels do. Prefetches never fault.
            for j in (0..64).step_by(16) {
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(i + j + 2048) as *const i8);
            }
            let v0 = _mm512_loadu_ps(p.add(i));
            let v1 = _mm512_loadu_ps(p.add(i + 16));
            let v2 = _mm512_loadu_ps(p.add(i + 32));
            let v3 = _mm512_loadu_ps(p.add(i + 48));
            a0 = _mm512_max_ps(a0, v0);
            a1 = _mm512_max_ps(a1, v1);
            a2 = _mm512_max_ps(a2, v2);
            a3 = _mm512_max_ps(a3, v3);
            nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v0, v1)
                | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v2, v3);
            i += 64;
        }
        while i < n {
            let k = if n - i >= 16 {
                0xffff
            } else {
                ((1u32 << (n - i)) - 1) as __mmask16
            };
            let v = _mm512_mask_loadu_ps(ninf, k, p.add(i));
            a0 = _mm512_max_ps(a0, v);
            nan |= _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
            i += 16;
        }
        let q = g.as_mut_ptr();
        _mm512_storeu_ps(q, a0);
        _mm512_storeu_ps(q.add(16), a1);
        _mm512_storeu_ps(q.add(32), a2);
        _mm512_storeu_ps(q.add(48), a3);
        nan == 0
    }

    #[target_feature(enable = "avx512f,avx2,fma,popcnt")]
    pub(super) unsafe fn group_max_f64(x: &[f64], g: &mut [f64; 64]) -> bool {
        let n = x.len();
        let p = x.as_ptr();
        let ninf = _mm512_set1_pd(f64::NEG_INFINITY);
        let (mut a0, mut a1, mut a2, mut a3) = (ninf, ninf, ninf, ninf);
        let mut nan: __mmask8 = 0;
        let mut i = 0;
        while i + 32 <= n {
            for j in (0..32).step_by(8) {
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(i + j + 1024) as *const i8);
            }
            let v0 = _mm512_loadu_pd(p.add(i));
            let v1 = _mm512_loadu_pd(p.add(i + 8));
            let v2 = _mm512_loadu_pd(p.add(i + 16));
            let v3 = _mm512_loadu_pd(p.add(i + 24));
            a0 = _mm512_max_pd(a0, v0);
            a1 = _mm512_max_pd(a1, v1);
            a2 = _mm512_max_pd(a2, v2);
            a3 = _mm512_max_pd(a3, v3);
            nan |= _mm512_cmp_pd_mask::<_CMP_UNORD_Q>(v0, v1)
                | _mm512_cmp_pd_mask::<_CMP_UNORD_Q>(v2, v3);
            i += 32;
        }
        while i < n {
            let k = if n - i >= 8 {
                0xff
            } else {
                ((1u32 << (n - i)) - 1) as __mmask8
            };
            let v = _mm512_mask_loadu_pd(ninf, k, p.add(i));
            a0 = _mm512_max_pd(a0, v);
            nan |= _mm512_cmp_pd_mask::<_CMP_UNORD_Q>(v, v);
            i += 8;
        }
        // 32 groups only: the rest of `g` stays −∞ (still disjoint groups, so the bound holds).
        let q = g.as_mut_ptr();
        _mm512_storeu_pd(q, a0);
        _mm512_storeu_pd(q.add(8), a1);
        _mm512_storeu_pd(q.add(16), a2);
        _mm512_storeu_pd(q.add(24), a3);
        nan == 0
    }

    #[target_feature(enable = "avx512f,avx2,fma,popcnt")]
    pub(super) unsafe fn collect_f32(x: &[f32], t: f32, cand: &mut Vec<(f64, u32)>) {
        let n = x.len();
        let p = x.as_ptr();
        let vt = _mm512_set1_ps(t);
        let mut i = 0;
        // 64 elements per test: one branch (mostly not taken) per 64, then the set bits.
        while i + 64 <= n {
            let m0 = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(_mm512_loadu_ps(p.add(i)), vt) as u64;
            let m1 = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(_mm512_loadu_ps(p.add(i + 16)), vt) as u64;
            let m2 = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(_mm512_loadu_ps(p.add(i + 32)), vt) as u64;
            let m3 = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(_mm512_loadu_ps(p.add(i + 48)), vt) as u64;
            let mut m = m0 | (m1 << 16) | (m2 << 32) | (m3 << 48);
            while m != 0 {
                let j = i + m.trailing_zeros() as usize;
                cand.push((*p.add(j) as f64, j as u32));
                m &= m - 1;
            }
            i += 64;
        }
        while i < n {
            let k = if n - i >= 16 {
                0xffff
            } else {
                ((1u32 << (n - i)) - 1) as __mmask16
            };
            let mut m =
                _mm512_mask_cmp_ps_mask::<_CMP_GE_OQ>(k, _mm512_maskz_loadu_ps(k, p.add(i)), vt);
            while m != 0 {
                let j = i + m.trailing_zeros() as usize;
                cand.push((*p.add(j) as f64, j as u32));
                m &= m - 1;
            }
            i += 16;
        }
    }

    /// Candidates kept in registers/stack by [`collect_rank_f32`]; more go the general way.
    const CAP: usize = 64;

    /// The bounded selection's second pass for float32, fused: zeroes `out` while collecting
    /// the candidates `x ≥ t` with compress instructions (no branch per element or chunk),
    /// then, when there are at most 16, ranks them by counting (value descending, index
    /// ascending) and writes the k best to `sel`/`vals`. Returns `false` (with `out` partly
    /// zeroed and `sel`/`vals` untouched) when there are more than 16 candidates.
    #[target_feature(enable = "avx512f,avx2,fma,popcnt")]
    pub(super) unsafe fn collect_rank_f32(
        x: &[f32],
        t: f32,
        k: usize,
        out: &mut [f32],
        sel: &mut Vec<u32>,
        vals: &mut Vec<f64>,
    ) -> bool {
        let n = x.len();
        debug_assert_eq!(out.len(), n);
        let (p, q) = (x.as_ptr(), out.as_mut_ptr());
        let vt = _mm512_set1_ps(t);
        let zero = _mm512_setzero_ps();
        let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
        // Room for CAP candidates plus one 64-element step past it (checked once per step).
        let mut cv = [0f32; CAP + 64];
        let mut ci = [0u32; CAP + 64];
        let mut c = 0usize;
        let mut i = 0;
        while i < n {
            if c > CAP {
                return false;
            }
            let end = (i + 64).min(n);
            // The next row's output will be written next: ask for it now (prefetches never
            // fault, so running past the end is harmless).
            _mm_prefetch::<_MM_HINT_ET0>(q.wrapping_add(i + 1024) as *const i8);
            while i < end {
                let k16 = if end - i >= 16 {
                    0xffff
                } else {
                    ((1u32 << (end - i)) - 1) as __mmask16
                };
                let v = _mm512_maskz_loadu_ps(k16, p.add(i));
                let m = _mm512_mask_cmp_ps_mask::<_CMP_GE_OQ>(k16, v, vt);
                _mm512_storeu_ps(cv.as_mut_ptr().add(c), _mm512_maskz_compress_ps(m, v));
                let idx = _mm512_add_epi32(iota, _mm512_set1_epi32(i as i32));
                _mm512_storeu_si512(
                    ci.as_mut_ptr().add(c) as *mut __m512i,
                    _mm512_maskz_compress_epi32(m, idx),
                );
                c += m.count_ones() as usize;
                _mm512_mask_storeu_ps(q.add(i), k16, zero);
                i += 16;
            }
        }
        if c > 16 {
            return false;
        }
        // c ≥ k: the k group maxima ≥ t are candidates. Rank r = #{greater} + #{equal and
        // earlier} is a permutation of 0..c; the ranks below k are the selection, in order.
        let valid = ((1u32 << c) - 1) as __mmask16;
        let w = _mm512_maskz_loadu_ps(valid, cv.as_ptr());
        sel.clear();
        vals.clear();
        sel.resize(k, 0);
        vals.resize(k, 0.0);
        for j in 0..c {
            let b = _mm512_set1_ps(cv[j]);
            let gt = _mm512_mask_cmp_ps_mask::<_CMP_GT_OQ>(valid, w, b).count_ones();
            let before = ((1u32 << j) - 1) as __mmask16;
            let eq = _mm512_mask_cmp_ps_mask::<_CMP_EQ_OQ>(before, w, b).count_ones();
            let r = (gt + eq) as usize;
            if r < k {
                sel[r] = ci[j];
                vals[r] = cv[j] as f64;
            }
        }
        true
    }

    /// The k-th largest of 64 group maxima (`1 ≤ k ≤ 16`, no NaN), without the unpredictable
    /// branches of an insertion sort. The k-th largest `L16` of the 16 lane-wise maxima of the
    /// four vectors is found by counting, for each lane, the lanes above it and not below it;
    /// `L16 ≤` the answer (those 16 are group maxima too), so the answer is the k-th largest
    /// of the group maxima `≥ L16`, which are few (at least k; usually not many more), and
    /// the same counting over them finds it. `None` when there are more than 16 of them.
    #[target_feature(enable = "avx512f,avx2,fma,popcnt")]
    pub(super) unsafe fn kth_largest_f32(g: &[f32; 64], k: usize) -> Option<f32> {
        let q = g.as_ptr();
        let v = [
            _mm512_loadu_ps(q),
            _mm512_loadu_ps(q.add(16)),
            _mm512_loadu_ps(q.add(32)),
            _mm512_loadu_ps(q.add(48)),
        ];
        let b = _mm512_max_ps(_mm512_max_ps(v[0], v[1]), _mm512_max_ps(v[2], v[3]));
        let l16 = kth_of_16(b, k)?;
        // The group maxima ≥ L16, packed into one vector (−∞ in the unused lanes).
        let lt = _mm512_set1_ps(l16);
        let mut w = [f32::NEG_INFINITY; 16 + 64];
        let mut c = 0usize;
        for vq in v {
            let m = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(vq, lt);
            _mm512_storeu_ps(w.as_mut_ptr().add(c), _mm512_maskz_compress_ps(m, vq));
            c += m.count_ones() as usize;
        }
        if c > 16 {
            return None;
        }
        let mut wv = _mm512_loadu_ps(w.as_ptr());
        if c < 16 {
            // Lanes past `c` hold values of a later store or zeros: make them −∞.
            wv = _mm512_mask_mov_ps(
                _mm512_set1_ps(f32::NEG_INFINITY),
                ((1u32 << c) - 1) as __mmask16,
                wv,
            );
        }
        kth_of_16(wv, k)
    }

    /// The k-th largest of the 16 lanes of `b` (no NaN): the lane value `v` with
    /// `#{> v} < k ≤ #{≥ v}`.
    #[inline(always)]
    unsafe fn kth_of_16(b: __m512, k: usize) -> Option<f32> {
        let mut a = [0f32; 16];
        _mm512_storeu_ps(a.as_mut_ptr(), b);
        for &v in &a {
            let t = _mm512_set1_ps(v);
            let gt = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(b, t).count_ones() as usize;
            let ge = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(b, t).count_ones() as usize;
            if gt < k && k <= ge {
                return Some(v);
            }
        }
        None
    }

    #[target_feature(enable = "avx512f,avx2,fma,popcnt")]
    pub(super) unsafe fn collect_f64(x: &[f64], t: f64, cand: &mut Vec<(f64, u32)>) {
        let n = x.len();
        let p = x.as_ptr();
        let vt = _mm512_set1_pd(t);
        let mut i = 0;
        while i < n {
            let k = if n - i >= 8 {
                0xff
            } else {
                ((1u32 << (n - i)) - 1) as __mmask8
            };
            let mut m =
                _mm512_mask_cmp_pd_mask::<_CMP_GE_OQ>(k, _mm512_maskz_loadu_pd(k, p.add(i)), vt);
            while m != 0 {
                let j = i + m.trailing_zeros() as usize;
                cand.push((*p.add(j), j as u32));
                m &= m - 1;
            }
            i += 8;
        }
    }
}

/// Portable group maxima (element `i` goes to group `i % 64`); `false` if `x` holds a NaN.
pub(crate) fn group_max_portable<T: Float>(x: &[T], g: &mut [T; GROUPS]) -> bool {
    let mut ch = x.chunks_exact(GROUPS);
    for c in &mut ch {
        for j in 0..GROUPS {
            // `max` would need a NaN rule; the NaN check is separate.
            g[j] = if c[j] > g[j] { c[j] } else { g[j] };
        }
    }
    for (j, &v) in ch.remainder().iter().enumerate() {
        g[j] = if v > g[j] { v } else { g[j] };
    }
    !kern::has_nan(x)
}

/// Portable candidate collection: `(x[i], i)` for every `x[i] ≥ t`, in index order.
pub(crate) fn collect_at_least_portable<T: Float>(x: &[T], t: T, cand: &mut Vec<(f64, u32)>) {
    for (ci, c) in x.chunks(16).enumerate() {
        // Most chunks hold no candidate: one vectorised test decides that.
        if !kern::any_at_least(c, t, false) {
            continue;
        }
        for (j, &v) in c.iter().enumerate() {
            if v >= t {
                cand.push((v.to_f64(), (ci * 16 + j) as u32));
            }
        }
    }
}

/// Selection for large k: one pass that keeps the k best `(value, index)` pairs seen so far
/// in a sorted buffer and only touches it for entries above its current k-th value. The
/// buffer starts as the first k entries sorted once (inserting them one by one shifted up to
/// k entries each: `O(k²)`, 89 s for k = 10⁶). For inputs in random order that is
/// `O(n + k log k · log n)`; an adversarial order (increasing values) would make it `O(n k)`,
/// so after a budget of insertions the row falls back to introselect
/// (`select_nth_unstable`, worst-case linear). `first` is scratch.
fn select_insertion<T: Float>(
    x: &[T],
    k: usize,
    sel: &mut Vec<u32>,
    vals: &mut Vec<f64>,
    first: &mut Vec<(f64, u32)>,
) {
    if k == 0 {
        return;
    }
    first.clear();
    first.extend(
        x[..k]
            .iter()
            .enumerate()
            .map(|(i, v)| (v.to_f64(), i as u32)),
    );
    // Descending value, then ascending index: where the insertions put equal values.
    first.sort_unstable_by(by_value_then_index);
    vals.extend(first.iter().map(|p| p.0));
    sel.extend(first.iter().map(|p| p.1));
    let mut budget = 8 * x.len() / k + 64;
    let mut thr = vals[k - 1];
    for (ci, chunk) in x[k..].chunks(16).enumerate() {
        // Most chunks hold nothing above the current k-th value: one vectorised test decides
        // that (`thr` is an element value, so it is exact in `T`).
        if !kern::any_at_least(chunk, T::from_f64(thr), true) {
            continue;
        }
        for (j, &v) in chunk.iter().enumerate() {
            let i = k + ci * 16 + j;
            let v = v.to_f64();
            if v <= thr {
                continue;
            }
            if budget == 0 {
                return select_fallback(x, k, sel, vals);
            }
            budget -= 1;
            // Insertion into the sorted (descending) buffer, after equal values (lower index
            // wins).
            let pos = vals.partition_point(|&b| b >= v);
            vals.pop();
            sel.pop();
            vals.insert(pos, v);
            sel.insert(pos, i as u32);
            thr = vals[k - 1];
        }
    }
}

/// Descending value, then ascending index: a total order on NaN-free rows (the selections run
/// after the NaN check), so the k-th element is unique. `−0` and `+0` are equal values, as in
/// the comparisons of the insertion pass (`total_cmp` would rank `+0` first whatever its index).
fn by_value_then_index(a: &(f64, u32), b: &(f64, u32)) -> std::cmp::Ordering {
    b.0.partial_cmp(&a.0)
        .unwrap_or(std::cmp::Ordering::Equal)
        .then(a.1.cmp(&b.1))
}

fn select_fallback<T: Float>(x: &[T], k: usize, sel: &mut Vec<u32>, vals: &mut Vec<f64>) {
    let mut all: Vec<(f64, u32)> = x
        .iter()
        .enumerate()
        .map(|(i, v)| (v.to_f64(), i as u32))
        .collect();
    all.select_nth_unstable_by(k - 1, by_value_then_index);
    all.truncate(k);
    all.sort_unstable_by(by_value_then_index);
    sel.clear();
    vals.clear();
    for (v, i) in all {
        vals.push(v);
        sel.push(i);
    }
}

thread_local! {
    /// Candidate scratch of the bounded selection (per thread, so rows need no allocation).
    static CAND: std::cell::RefCell<Vec<(f64, u32)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Top-k softmax of one row; returns `logsumexp` of the selected entries (for the loss).
pub fn topk_row<T: Float>(
    x: &[T],
    k: usize,
    out: &mut [T],
    sel: &mut Vec<u32>,
    vals: &mut Vec<f64>,
) -> f64 {
    if x.is_empty() {
        return f64::NEG_INFINITY;
    }
    if k >= x.len() {
        let mut b = std::mem::take(vals);
        softmax::softmax_row(x, T::ONE, out, &mut b);
        let l = softmax::logsumexp_row(x, &mut b);
        *vals = b;
        return l;
    }
    let ok = CAND.with(|c| select_topk_checked(x, k, sel, vals, &mut c.borrow_mut(), out));
    if !ok {
        out.fill(T::NAN);
        return f64::NAN;
    }
    let m = vals[0];
    if m == f64::INFINITY {
        let count = vals.iter().filter(|&&v| v == f64::INFINITY).count();
        for (&i, &v) in sel.iter().zip(vals.iter()) {
            if v == f64::INFINITY {
                out[i as usize] = T::from_f64(1.0 / count as f64);
            }
        }
        return f64::INFINITY;
    }
    if m == f64::NEG_INFINITY {
        out.fill(T::NAN);
        return f64::NEG_INFINITY;
    }
    // The exponentials with the vector kernel (k libm calls were a tenth of the time at k=10).
    let mut buf = [0f64; 64];
    let mut heap = Vec::new();
    let e = if k <= buf.len() {
        &mut buf[..vals.len()]
    } else {
        heap.resize(vals.len(), 0.0);
        &mut heap[..]
    };
    let s = exp::exp_store_sum_f64(vals, m, 1.0, e);
    for (&i, &v) in sel.iter().zip(e.iter()) {
        out[i as usize] = T::from_f64(v / s);
    }
    m + s.ln()
}

pub fn topk_softmax<T: Float>(
    x: &ArrayViewD<'_, T>,
    axis: usize,
    k: Params<'_>,
    out: &mut ArrayViewMutD<'_, T>,
    threads: Option<usize>,
) -> Result<()> {
    let spec = RowSpec::new(x.shape(), axis)?;
    check_k(&k, spec.n_rows())?;
    map_rows(x, axis, out, threads, |r, xr, o, w| {
        let kk = k.get(r).min(usize::MAX as f64) as usize;
        topk_row(xr, kk, o, &mut w.idx, &mut w.f);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_matches_sort_and_fallback() {
        let mut sel = Vec::new();
        let mut vals = Vec::new();
        for n in [5usize, 50, 500] {
            // Increasing order exhausts the insertion budget and exercises the fallback;
            // decreasing order inserts nothing after the sorted first k; k = n − 1 is almost
            // all fill.
            for (pat, inc) in [(0, false), (1, true), (2, false)] {
                let x: Vec<f32> = (0..n)
                    .map(|i| match pat {
                        0 => ((i * 7919) % 97) as f32,
                        1 => i as f32,
                        _ => -(i as f32),
                    })
                    .collect();
                for k in [1usize, 3, n / 2 + 1, n - 1] {
                    select_topk(&x, k, &mut sel, &mut vals);
                    let mut idx: Vec<usize> = (0..n).collect();
                    idx.sort_by(|&a, &b| x[b].partial_cmp(&x[a]).unwrap().then(a.cmp(&b)));
                    let want: Vec<u32> = idx[..k.min(n)].iter().map(|&i| i as u32).collect();
                    assert_eq!(sel, want, "n={n} k={k} inc={inc}");
                }
            }
        }
    }

    /// The bounded selection, AVX-512 (when detected) and portable, against a full sort:
    /// every tail length of the vector loops, k up to its limit, ties, ±∞, NaN anywhere.
    fn bounded_matches_sort<T: Float>() {
        let paths: Vec<bool> = if avx512() {
            vec![false, true]
        } else {
            vec![false]
        };
        let (mut sel, mut vals, mut cand) = (Vec::new(), Vec::new(), Vec::new());
        let lens: Vec<usize> = (128..=200)
            .chain([255, 256, 257, 1000, 1024, 1031])
            .collect();
        for &n in &lens {
            for pat in 0..6 {
                let x: Vec<T> = (0..n)
                    .map(|i| {
                        let h = ((i * 7919 + pat * 104_729) % 1009) as f64;
                        T::from_f64(match pat {
                            0 => h * 0.37 - 100.0,
                            1 => (h as usize % 5) as f64, // many ties
                            2 => i as f64,                // increasing: bound is loose
                            3 => -(i as f64),
                            4 => match i % 97 {
                                3 => f64::INFINITY,
                                5..=7 => f64::NEG_INFINITY,
                                _ => h,
                            },
                            _ => {
                                if i % 61 == 0 {
                                    h
                                } else {
                                    f64::NEG_INFINITY
                                }
                            }
                        })
                    })
                    .collect();
                let mut idx: Vec<usize> = (0..n).collect();
                idx.sort_by(|&a, &b| x[b].partial_cmp(&x[a]).expect("no NaN").then(a.cmp(&b)));
                for k in [1usize, 2, 3, 10, 17, 31, 32] {
                    let want: Vec<u32> = idx[..k].iter().map(|&i| i as u32).collect();
                    for &simd in &paths {
                        sel.clear();
                        vals.clear();
                        let mut out = vec![T::ONE; n + 16];
                        assert!(select_bounded(
                            &x,
                            k,
                            &mut sel,
                            &mut vals,
                            &mut cand,
                            &mut out[..n],
                            simd
                        ));
                        assert_eq!(sel, want, "n={n} pat={pat} k={k} simd={simd}");
                        // Zeroed, and nothing stored past the row.
                        assert!(out[..n].iter().all(|&v| v == T::ZERO));
                        assert!(out[n..].iter().all(|&v| v == T::ONE));
                        for (&i, &v) in sel.iter().zip(&vals) {
                            assert_eq!(v, x[i as usize].to_f64());
                        }
                    }
                }
                for pos in [0, 63, 64, n / 2, n - 1] {
                    let mut y = x.clone();
                    y[pos] = T::NAN;
                    for &simd in &paths {
                        let mut out = vec![T::ZERO; n];
                        assert!(
                            !select_bounded(&y, 5, &mut sel, &mut vals, &mut cand, &mut out, simd),
                            "NaN at {pos} of {n} missed (simd={simd})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn bounded_selection_every_path() {
        bounded_matches_sort::<f32>();
        bounded_matches_sort::<f64>();
    }

    #[test]
    fn restricted_softmax() {
        let mut sel = Vec::new();
        let mut vals = Vec::new();
        let x = [1.0f64, 3.0, 2.0, 3.0];
        let mut o = [0.0; 4];
        let l = topk_row(&x, 2, &mut o, &mut sel, &mut vals);
        assert_eq!(o, [0.0, 0.5, 0.0, 0.5]);
        assert!((l - (3.0 + 2f64.ln())).abs() < 1e-15);
    }
}
