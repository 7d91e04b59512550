//! Softmax with temperature, log-softmax, logsumexp and their VJPs.
//!
//! The row kernel is blocked: each block of [`Float::BLOCK`] elements is read from memory once
//! for its maximum and, while still in L1, exponentiated against a reference — the block
//! maximum, or for float32 at temperature 1 a grid point near it that the exp kernel folds
//! into its range reduction (see [`exp::exp_store_sum_f32_ref`]) — stored to the output and
//! summed (at the AVX-512 level the next block's maximum is found in the same loop). Block sums
//! are folded into one running `(reference, sum)` pair in f64 (the online-softmax recurrence,
//! but per block, so the rescaling costs one scalar `exp` per block rather than per element).
//! A final pass multiplies each block by `exp(block_ref − ref) / sum`. Small rows are a single block, so the data is read from
//! memory once and written once, with one vector `exp` per element. Sums are accumulated in f64
//! lanes (a float32 sum over a long row would lose ~√n·eps).
//!
//! Special values (documented in `python/probcraft/softmax.py`): `−∞` entries get 0; a row of
//! only `−∞` is NaN (as scipy and torch); `+∞` entries share the mass equally (the limit),
//! NaN anywhere makes the row NaN; an empty axis gives an empty result (logsumexp: `−∞`).

use ndarray::{ArrayViewD, ArrayViewMutD};

use super::layout::{
    fmt_num, map_rows, map_rows2, reduce_rows, threads_from, Params, RowSpec,
    CHEAP_PARALLEL_MIN_ELEMENTS,
};
use super::{exp, kern, Float};
use crate::error::{Error, Result};

/// The thread count for one of this module's maps over `elements` elements (see
/// [`CHEAP_PARALLEL_MIN_ELEMENTS`]).
fn cheap(threads: Option<usize>, elements: usize) -> Option<usize> {
    threads_from(threads, elements, CHEAP_PARALLEL_MIN_ELEMENTS)
}

/// `1/τ` in the element type, rejecting temperatures whose inverse is not finite there, or
/// rounds to 0 (float32, τ > ~7e44: the kernels' `x·(1/τ)` would turn −∞ entries into NaN,
/// −∞·0, where float64 gives the limit).
pub(crate) fn inv_temperature<T: Float>(t: f64) -> Result<T> {
    if t.is_nan() || t <= 0.0 || !t.is_finite() {
        return Err(Error::invalid(format!(
            "temperature must be positive and finite, got {}",
            fmt_num(t)
        )));
    }
    let c = T::from_f64(1.0 / t);
    if !c.to_f64().is_finite() {
        return Err(Error::invalid(format!(
            "temperature {} is too small for {} (1/temperature overflows)",
            fmt_num(t),
            T::NAME
        )));
    }
    if c == T::ZERO {
        return Err(Error::invalid(format!(
            "temperature {} is too large for {} (1/temperature rounds to 0)",
            fmt_num(t),
            T::NAME
        )));
    }
    Ok(c)
}

/// `1/τ` when one temperature serves every row (computed once, not per row).
fn one_temperature<T: Float>(t: &Params<'_>) -> Result<Option<T>> {
    Ok(match t.0 {
        [v] => Some(inv_temperature::<T>(*v)?),
        _ => None,
    })
}

fn check_temperature<T: Float>(t: &Params<'_>, n_rows: usize) -> Result<()> {
    t.check(
        n_rows,
        "temperature",
        |v| v > 0.0 && v.is_finite(),
        "positive and finite",
    )?;
    for &v in t.0 {
        inv_temperature::<T>(v)?;
    }
    Ok(())
}

/// `2^(j/16)` in f64 (correctly rounded).
const EXP2_16: [f64; 16] = [
    1.0,
    1.044_273_782_427_413_8,
    1.090_507_732_665_257_7,
    1.138_788_634_756_691_6,
    1.189_207_115_002_721,
    1.241_857_812_073_484,
    1.296_839_554_651_009_6,
    1.354_255_546_936_892_7,
    std::f64::consts::SQRT_2,
    1.476_826_145_939_499_3,
    1.542_210_825_407_940_7,
    1.610_490_331_949_254_3,
    1.681_792_830_507_429,
    1.756_252_160_373_299_5,
    1.834_008_086_409_342_4,
    1.915_206_561_397_147_4,
];

/// `exp(d·c)` for `d ≤ 0`, the ratio of two block references (see [`block_exp_sum`]). Grid
/// references at temperature 1 differ by a multiple of `ln2/16`: then `2^(n/16)` from a table
/// and the exponent bits (no libm `exp`, whose two calls per block were ~3% of a 8×262144
/// call); elsewhere `exp`. A `d` that is not a grid multiple but lies within 1e−9 of one
/// (`4·10⁻¹¹` relative) makes no difference to a float32 result either.
#[inline]
fn ref_ratio(d: f64, c: f64) -> f64 {
    if c == 1.0 {
        let q = d * (16.0 / std::f64::consts::LN_2);
        let n = q.round();
        if (q - n).abs() < 1e-9 && (-16_000.0..=0.0).contains(&n) {
            let n = n as i64;
            let scale = f64::from_bits(((1023 + (n >> 4)) as u64) << 52);
            return EXP2_16[(n & 15) as usize] * scale;
        }
    }
    (d * c).exp()
}

/// The outcome of the first pass over a row.
enum Pass1 {
    /// The largest block reference `m` (f64; the row maximum, or a grid point near it) and
    /// `Σ exp((x − m)·c)`.
    Normal {
        m: f64,
        s: f64,
    },
    /// At least one `+∞` and no NaN: `count` entries are `+∞`.
    PosInf {
        count: usize,
    },
    /// Every entry is `−∞`.
    AllNegInf,
    /// A NaN somewhere.
    Nan,
    Empty,
}

fn special_scan<T: Float>(x: &[T]) -> Pass1 {
    if kern::find_nan(x).is_some() {
        return Pass1::Nan;
    }
    let count = x.iter().filter(|&&v| v == T::INFINITY).count();
    if count > 0 {
        Pass1::PosInf { count }
    } else if x.iter().all(|&v| v == T::NEG_INFINITY) {
        Pass1::AllNegInf
    } else {
        // Unreachable with a correct max kernel; scanning again is the safe answer.
        Pass1::Nan
    }
}

/// The block's maximum and a lower bound on its elements (−∞ where that bound is not free;
/// see [`exp::max_min_f32`]).
#[inline]
fn block_max_min<T: Float>(x: &[T]) -> (T, T) {
    if let Some(x) = kern::cast::<T, f32>(x) {
        let (m, lo) = exp::max_min_f32(x);
        return (T::from_f64(m as f64), T::from_f64(lo as f64));
    }
    (T::k_max(x), T::NEG_INFINITY)
}

/// `Σ exp((x − ref)·c)` and the block reference `ref`, storing the terms in `out` when given;
/// `lo ≤` every element of `x` lets the float32 kernel skip its clamp. `ref` is the block
/// maximum `m`, or when storing float32 at the AVX-512 level with temperature 1 a grid point
/// within `ln2/32` of it (see [`exp::exp_store_sum_f32_ref`]): softmax only needs one
/// common reference per block, and `pass1` folds the blocks together by their references.
/// When it can, the kernel also returns [`block_max_min`] of `next` (the following block).
#[inline]
#[allow(clippy::type_complexity)]
fn block_exp_sum<T: Float>(
    x: &[T],
    m: T,
    c: T,
    lo: T,
    out: Option<&mut [T]>,
    next: Option<&[T]>,
) -> (f64, f64, Option<(T, T)>) {
    let (m32, c32, lo32) = (m.to_f64() as f32, c.to_f64() as f32, lo.to_f64() as f32);
    match (kern::cast::<T, f32>(x), out) {
        (Some(x), Some(o)) => {
            let o = kern::cast_mut::<T, f32>(o).expect("same element type");
            let next = next.and_then(kern::cast::<T, f32>);
            let (s, r, mm) = exp::exp_store_sum_f32_ref(x, m32, c32, lo32, o, next);
            let mm = mm.map(|(h, l)| (T::from_f64(h as f64), T::from_f64(l as f64)));
            (s, r, mm)
        }
        (Some(x), None) => (exp::exp_sum_f32_above(x, m32, c32, lo32), m.to_f64(), None),
        (None, Some(o)) => (T::k_exp_store_sum(x, m, c, o), m.to_f64(), None),
        (None, None) => (T::k_exp_sum(x, m, c), m.to_f64(), None),
    }
}

/// First pass; when `out` is given, also stores the per-block exponentials there and the block
/// maxima in `blocks` (−∞ for blocks that are entirely −∞).
fn pass1<T: Float>(x: &[T], c: T, mut out: Option<&mut [T]>, blocks: &mut Vec<f64>) -> Pass1 {
    if x.is_empty() {
        return Pass1::Empty;
    }
    blocks.clear();
    let cf = c.to_f64();
    let (mut m, mut s) = (f64::NEG_INFINITY, 0.0f64);
    // The next block's maximum and bound, when the exp kernel of this one found them.
    let mut ahead: Option<(T, T)> = None;
    for (k, xb) in x.chunks(T::BLOCK).enumerate() {
        let (bm, lo) = match ahead.take() {
            Some(v) => v,
            None => block_max_min(xb),
        };
        if !(bm > T::NEG_INFINITY && bm < T::INFINITY) {
            if bm == T::NEG_INFINITY && kern::find_nan(xb).is_none() {
                if let Some(o) = out.as_deref_mut() {
                    o[k * T::BLOCK..k * T::BLOCK + xb.len()].fill(T::ZERO);
                }
                blocks.push(f64::NEG_INFINITY);
                continue;
            }
            return special_scan(x);
        }
        // `bmf`: the block's reference (its maximum, or a grid point near it).
        let next = x
            .get((k + 1) * T::BLOCK..)
            .map(|r| &r[..r.len().min(T::BLOCK)]);
        let (bs, bmf, mm) = block_exp_sum(
            xb,
            bm,
            c,
            lo,
            out.as_deref_mut()
                .map(|o| &mut o[k * T::BLOCK..k * T::BLOCK + xb.len()]),
            next,
        );
        ahead = mm;
        // The scalar `exp` only where it is not 0 or 1 (same results: exp(−∞) = 0 and
        // exp(0) = 1 exactly): a one-block row needs none (~100 cycles a row, 10% of a
        // 1024-wide row's time on Zen 5).
        if bmf > m {
            s = if m == f64::NEG_INFINITY {
                bs
            } else {
                s * ref_ratio(m - bmf, cf) + bs
            };
            m = bmf;
        } else if bmf == m {
            s += bs;
        } else {
            s += bs * ref_ratio(bmf - m, cf);
        }
        blocks.push(bmf);
    }
    if m == f64::NEG_INFINITY {
        return Pass1::AllNegInf;
    }
    if s.is_nan() {
        return Pass1::Nan;
    }
    Pass1::Normal { m, s }
}

/// Softmax of one row: `out = exp((x − max)·c) / Σ`. `blocks` is scratch. Returns
/// `log Σ exp(x·c)` (for the losses).
pub fn softmax_row<T: Float>(x: &[T], c: T, out: &mut [T], blocks: &mut Vec<f64>) -> f64 {
    match softmax_row_ms(x, c, out, blocks) {
        Ok((m, s)) => m * c.to_f64() + s.ln(),
        Err(lse) => lse,
    }
}

/// [`softmax_row`] returning the row's `(max, Σ)` for a normal row (the `ln` is left to the
/// callers that want it), or the `log Σ exp` of a special row.
#[inline]
fn softmax_row_ms<T: Float>(
    x: &[T],
    c: T,
    out: &mut [T],
    blocks: &mut Vec<f64>,
) -> std::result::Result<(f64, f64), f64> {
    match pass1(x, c, Some(&mut *out), blocks) {
        Pass1::Normal { m, s } => {
            let cf = c.to_f64();
            // Last block first: on a row longer than L2 the blocks written last are the ones
            // still cached (8×262144 f32, rows of 1 MiB: see the performance notes in exp.rs).
            for (ob, &bm) in out.chunks_mut(T::BLOCK).zip(blocks.iter()).rev() {
                if bm == f64::NEG_INFINITY {
                    continue;
                }
                let f = if bm == m {
                    1.0 / s
                } else {
                    ref_ratio(bm - m, cf) / s
                };
                match kern::cast_mut::<T, f32>(ob) {
                    Some(o) => exp::scale_f32(o, f as f32),
                    None => kern::scale(ob, T::from_f64(f)),
                }
            }
            Ok((m, s))
        }
        p => Err(special_row(p, x, out)),
    }
}

/// [`softmax_row`] for outputs much larger than the last-level cache: the exponentials go to
/// `scratch` (which stays in L1/L2) and the final pass writes `out` with non-temporal stores,
/// so its lines are neither read for ownership nor left to evict the input. Memory traffic
/// per element drops from read + read-for-ownership + write to read + write. Same results
/// as [`softmax_row`].
pub fn softmax_row_streaming<T: Float>(
    x: &[T],
    c: T,
    out: &mut [T],
    blocks: &mut Vec<f64>,
    scratch: &mut Vec<T>,
) -> f64 {
    let lse = softmax_row_streaming_unfenced(x, c, out, blocks, scratch);
    exp::streaming_done();
    lse
}

/// [`softmax_row_streaming`] without the closing store fence: the caller must run
/// [`exp::streaming_done`] on this thread before anything else reads `out` (see
/// `Work::unfenced`). One fence per row cost ~7% at 512 MiB.
fn softmax_row_streaming_unfenced<T: Float>(
    x: &[T],
    c: T,
    out: &mut [T],
    blocks: &mut Vec<f64>,
    scratch: &mut Vec<T>,
) -> f64 {
    // The scratch row starts at the input's offset from a cache line, so that the aligned
    // kernels align its stores too.
    let line = 64 / std::mem::size_of::<T>();
    // Grown, never cleared: `pass1` writes every element of the row's slice before the scale
    // pass reads it (zeroing it first was a memset per row, ~6% at 128 MiB of 1024-wide rows).
    if scratch.len() < x.len() + line {
        scratch.resize(x.len() + line, T::ZERO);
    }
    let want = (x.as_ptr() as usize % 64) / std::mem::size_of::<T>();
    let have = (scratch.as_ptr() as usize % 64) / std::mem::size_of::<T>();
    let start = (want + line - have) % line;
    let scratch = &mut scratch[start..start + x.len()];
    match pass1(x, c, Some(&mut *scratch), blocks) {
        Pass1::Normal { m, s } => {
            let cf = c.to_f64();
            for ((ob, sb), &bm) in out
                .chunks_mut(T::BLOCK)
                .zip(scratch.chunks(T::BLOCK))
                .zip(blocks.iter())
            {
                // A block of −∞ was zeroed in `scratch` by the first pass: copy it too.
                let f = if bm == f64::NEG_INFINITY {
                    0.0
                } else if bm == m {
                    1.0 / s
                } else {
                    ref_ratio(bm - m, cf) / s
                };
                exp::scale_into_streaming(sb, f, ob);
            }
            m * cf + s.ln()
        }
        p => special_row(p, x, out),
    }
}

/// The rows [`pass1`] does not finish normally: written directly.
fn special_row<T: Float>(p: Pass1, x: &[T], out: &mut [T]) -> f64 {
    match p {
        Pass1::Empty => f64::NEG_INFINITY,
        Pass1::PosInf { count } => {
            let share = T::from_f64(1.0 / count as f64);
            for (o, &v) in out.iter_mut().zip(x) {
                *o = if v == T::INFINITY { share } else { T::ZERO };
            }
            f64::INFINITY
        }
        Pass1::AllNegInf => {
            out.fill(T::NAN);
            f64::NEG_INFINITY
        }
        Pass1::Nan | Pass1::Normal { .. } => {
            out.fill(T::NAN);
            f64::NAN
        }
    }
}

/// Log-softmax of one row: `out = (x − max)·c − ln Σ`.
pub fn log_softmax_row<T: Float>(x: &[T], c: T, out: &mut [T], blocks: &mut Vec<f64>) {
    match pass1(x, c, None, blocks) {
        Pass1::Empty => {}
        Pass1::Normal { m, s } => kern::affine(x, T::from_f64(m), c, T::from_f64(s.ln()), out),
        Pass1::PosInf { count } => {
            let l = T::from_f64(-(count as f64).ln());
            for (o, &v) in out.iter_mut().zip(x) {
                *o = if v == T::INFINITY { l } else { T::NEG_INFINITY };
            }
        }
        Pass1::AllNegInf | Pass1::Nan => out.fill(T::NAN),
    }
}

/// `log Σ exp(x)` of one row, in f64.
pub fn logsumexp_row<T: Float>(x: &[T], blocks: &mut Vec<f64>) -> f64 {
    match pass1(x, T::ONE, None, blocks) {
        Pass1::Empty | Pass1::AllNegInf => f64::NEG_INFINITY,
        Pass1::Normal { m, s } => m + s.ln(),
        Pass1::PosInf { .. } => f64::INFINITY,
        Pass1::Nan => f64::NAN,
    }
}

/// `softmax(x / τ)` along `axis`, written to `out` (same shape as `x`).
pub fn softmax<T: Float>(
    x: &ArrayViewD<'_, T>,
    axis: usize,
    temperature: Params<'_>,
    out: &mut ArrayViewMutD<'_, T>,
    threads: Option<usize>,
) -> Result<()> {
    let spec = RowSpec::new(x.shape(), axis)?;
    check_temperature::<T>(&temperature, spec.n_rows())?;
    let one = one_temperature::<T>(&temperature)?;
    // Only when the output rows are written in place: a strided output row is built in a
    // scratch row and copied out, which non-temporal stores would only slow down (and the
    // copy would read them before the fence).
    let in_place = axis < out.ndim() && (out.shape()[axis] <= 1 || out.strides()[axis] == 1);
    let streaming = in_place && exp::stream_output(x.len() * std::mem::size_of::<T>());
    let threads = cheap(threads, x.len());
    map_rows(x, axis, out, threads, |r, xr, o, w| {
        let c = match one {
            Some(c) => c,
            None => inv_temperature::<T>(temperature.get(r))?,
        };
        if streaming {
            // Fenced once when `w` is dropped, on this thread (see `Work::unfenced`).
            w.unfenced = true;
            softmax_row_streaming_unfenced(xr, c, o, &mut w.f, &mut w.c);
        } else {
            let _ = softmax_row_ms(xr, c, o, &mut w.f);
        }
        Ok(())
    })
}

/// `log_softmax(x / τ)` along `axis`.
pub fn log_softmax<T: Float>(
    x: &ArrayViewD<'_, T>,
    axis: usize,
    temperature: Params<'_>,
    out: &mut ArrayViewMutD<'_, T>,
    threads: Option<usize>,
) -> Result<()> {
    let spec = RowSpec::new(x.shape(), axis)?;
    check_temperature::<T>(&temperature, spec.n_rows())?;
    let one = one_temperature::<T>(&temperature)?;
    map_rows(x, axis, out, cheap(threads, x.len()), |r, xr, o, w| {
        let c = match one {
            Some(c) => c,
            None => inv_temperature::<T>(temperature.get(r))?,
        };
        log_softmax_row(xr, c, o, &mut w.f);
        Ok(())
    })
}

/// `log Σ exp(x)` along `axis`: one value per row (C order of the other axes).
pub fn logsumexp<T: Float>(
    x: &ArrayViewD<'_, T>,
    axis: usize,
    out: &mut [T],
    threads: Option<usize>,
) -> Result<()> {
    reduce_rows(x, axis, out, cheap(threads, x.len()), |_, xr, w| {
        Ok(T::from_f64(logsumexp_row(xr, &mut w.f)))
    })
}

/// VJP of `softmax(x/τ)` from its output `y`: `(y ⊙ (g − ⟨y, g⟩)) / τ`.
pub fn softmax_vjp<T: Float>(
    y: &ArrayViewD<'_, T>,
    g: &ArrayViewD<'_, T>,
    axis: usize,
    temperature: Params<'_>,
    out: &mut ArrayViewMutD<'_, T>,
    threads: Option<usize>,
) -> Result<()> {
    vjp_rows(y, g, axis, temperature, out, threads, |yr, gr, c, o| {
        let d = T::from_f64(kern::dot(yr, gr));
        kern::softmax_vjp(yr, gr, d, c, o);
    })
}

/// VJP of `log_softmax(x/τ)` from its output `z`: `(g − exp(z)·Σg) / τ`.
pub fn log_softmax_vjp<T: Float>(
    z: &ArrayViewD<'_, T>,
    g: &ArrayViewD<'_, T>,
    axis: usize,
    temperature: Params<'_>,
    out: &mut ArrayViewMutD<'_, T>,
    threads: Option<usize>,
) -> Result<()> {
    vjp_rows(z, g, axis, temperature, out, threads, |zr, gr, c, o| {
        let s = T::from_f64(kern::sum(gr));
        kern::log_softmax_vjp(zr, gr, s, c, o);
    })
}

/// The two VJPs' common frame: `row(y_row, g_row, 1/τ, out_row)` for every row, the
/// temperatures checked first.
fn vjp_rows<T: Float>(
    y: &ArrayViewD<'_, T>,
    g: &ArrayViewD<'_, T>,
    axis: usize,
    temperature: Params<'_>,
    out: &mut ArrayViewMutD<'_, T>,
    threads: Option<usize>,
    row: impl Fn(&[T], &[T], T, &mut [T]) + Sync,
) -> Result<()> {
    let spec = RowSpec::new(y.shape(), axis)?;
    check_temperature::<T>(&temperature, spec.n_rows())?;
    let threads = cheap(threads, y.len());
    map_rows2(y, g, axis, out, threads, |r, yr, gr, o, _| {
        row(yr, gr, T::from_f64(1.0 / temperature.get(r)), o);
        Ok(())
    })
}

/// VJP of logsumexp from its *input* (its output does not determine the Jacobian):
/// `g_row · softmax(x)`. `g` has one value per row.
pub fn logsumexp_vjp<T: Float>(
    x: &ArrayViewD<'_, T>,
    g: &[f64],
    axis: usize,
    out: &mut ArrayViewMutD<'_, T>,
    threads: Option<usize>,
) -> Result<()> {
    let spec = RowSpec::new(x.shape(), axis)?;
    if g.len() != spec.n_rows() {
        return Err(Error::invalid(format!(
            "grad has {} values; logsumexp has {} outputs",
            g.len(),
            spec.n_rows()
        )));
    }
    map_rows(x, axis, out, cheap(threads, x.len()), |r, xr, o, w| {
        softmax_row(xr, T::ONE, o, &mut w.f);
        kern::scale(o, T::from_f64(g[r]));
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f64], c: f64) -> Vec<f64> {
        let m = x.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = x.iter().map(|v| ((v - m) * c).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    }

    #[test]
    fn rows_of_many_lengths_match_reference() {
        let mut blocks = Vec::new();
        for n in [1usize, 2, 7, 8, 9, 31, 1023, 1024, 1025, 2049, 5000] {
            let x: Vec<f64> = (0..n)
                .map(|i| ((i * 7919) % 113) as f64 * 0.37 - 20.0)
                .collect();
            let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            for c in [1.0, 0.5, 3.0] {
                let want = reference(&x, c);
                let x32d: Vec<f64> = x32.iter().map(|&v| v as f64).collect();
                let want32 = reference(&x32d, c);
                let mut o = vec![0.0; n];
                softmax_row(&x, c, &mut o, &mut blocks);
                let mut o32 = vec![0.0f32; n];
                softmax_row(&x32, c as f32, &mut o32, &mut blocks);
                for i in 0..n {
                    assert!((o[i] - want[i]).abs() <= 1e-14 + 1e-13 * want[i], "n={n}");
                    assert!(
                        (o32[i] as f64 - want32[i]).abs() <= 1e-6 * want32[i] + 1e-9,
                        "n={n} c={c} i={i}"
                    );
                }
                let mut l = vec![0.0; n];
                log_softmax_row(&x, c, &mut l, &mut blocks);
                for i in 0..n {
                    assert!((l[i] - want[i].ln()).abs() < 1e-12);
                }
            }
            let lse = logsumexp_row(&x, &mut blocks);
            let direct = x.iter().map(|v| v.exp()).sum::<f64>().ln();
            assert!((lse - direct).abs() < 1e-12);
        }
    }

    /// The streaming variant gives the same bits as the in-place one (any level), including
    /// blocks of −∞, special rows and outputs at every offset within a cache line. One
    /// scratch row per element type serves every call, as on a worker thread: what an earlier
    /// row left in it must not reach the output (the scratch is not cleared between rows).
    #[test]
    fn streaming_rows_match() {
        fn check<T: Float>(x: &[T], c: T, scratch: &mut Vec<T>) {
            let n = x.len();
            let mut b = Vec::new();
            let mut want = vec![T::ZERO; n];
            let lw = softmax_row(x, c, &mut want, &mut b);
            for off in [0usize, 1, 3, 8, 15] {
                let mut buf = vec![T::ONE; n + 16];
                let got = &mut buf[off..off + n];
                let lg = softmax_row_streaming(x, c, got, &mut b, scratch);
                assert!(lg.to_bits() == lw.to_bits() || (lg.is_nan() && lw.is_nan()));
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        g.to_f64().to_bits() == w.to_f64().to_bits() || (g.is_nan() && w.is_nan())
                    );
                }
                assert!(buf[..off]
                    .iter()
                    .chain(&buf[off + n..])
                    .all(|&v| v == T::ONE));
            }
        }
        let (s32, s64) = (&mut Vec::<f32>::new(), &mut Vec::<f64>::new());
        for n in [0usize, 1, 7, 100, 1024, 2048, 2049, 5000] {
            let x: Vec<f64> = (0..n)
                .map(|i| ((i * 7919) % 113) as f64 * 0.37 - 20.0)
                .collect();
            let mut xi = x.clone();
            if n > 2500 {
                xi[..2048].fill(f64::NEG_INFINITY); // a whole block of −∞
            }
            for v in [&x, &xi] {
                check::<f64>(v, 1.0, s64);
                check::<f64>(v, 0.3, s64);
                let v32: Vec<f32> = v.iter().map(|&a| a as f32).collect();
                check::<f32>(&v32, 1.0, s32);
                check::<f32>(&v32, 2.5, s32);
            }
            if n > 0 {
                let mut s = x.clone();
                s[n / 2] = f64::INFINITY;
                check::<f64>(&s, 1.0, s64);
                s[0] = f64::NAN;
                check::<f64>(&s, 1.0, s64);
                check::<f64>(&vec![f64::NEG_INFINITY; n], 1.0, s64);
            }
        }
    }

    /// The whole-array path gives the bits of `softmax_row`, with special rows between normal
    /// ones, rows of one and of several blocks, serially and on two threads, and for strided
    /// outputs.
    #[test]
    fn array_path_matches_softmax_row() {
        use ndarray::{ArrayD, IxDyn};
        fn check<T: Float>(rows: usize, n: usize, c: f64) {
            let x = ArrayD::from_shape_fn(IxDyn(&[rows, n]), |i| {
                let (r, j) = (i[0], i[1]);
                let v = ((r * 31 + j * 7919) % 113) as f64 * 0.37 - 20.0;
                let v = match r % 7 {
                    1 if j == n / 2 => f64::NAN,
                    2 => f64::NEG_INFINITY,
                    3 if j % 3 == 0 => f64::INFINITY,
                    4 if j < 2048.min(n - 1) => f64::NEG_INFINITY,
                    _ => v,
                };
                T::from_f64(v)
            });
            let ct = T::from_f64(c);
            let mut want = x.clone();
            let mut b = Vec::new();
            for r in 0..rows {
                // The row in place: the float32 sum's rounding depends on its alignment.
                let xr = x.index_axis(ndarray::Axis(0), r);
                let mut o = vec![T::ZERO; n];
                softmax_row(xr.as_slice().unwrap(), ct, &mut o, &mut b);
                for j in 0..n {
                    want[[r, j]] = o[j];
                }
            }
            let same = |a: &ArrayD<T>| {
                a.iter().zip(want.iter()).all(|(g, w)| {
                    g.to_f64().to_bits() == w.to_f64().to_bits() || (g.is_nan() && w.is_nan())
                })
            };
            for threads in [1, 2] {
                let mut out = ArrayD::from_elem(IxDyn(&[rows, n]), T::ONE);
                softmax(
                    &x.view(),
                    1,
                    Params(&[1.0 / c]),
                    &mut out.view_mut(),
                    Some(threads),
                )
                .unwrap();
                assert!(same(&out), "rows={rows} n={n} threads={threads}");
                // A transposed output: strided rows, built in scratch and copied out.
                let mut t = ArrayD::from_elem(IxDyn(&[n, rows]), T::ONE);
                let mut tv = t.view_mut().reversed_axes();
                softmax(&x.view(), 1, Params(&[1.0 / c]), &mut tv, Some(threads)).unwrap();
                assert!(same(&tv.to_owned()), "strided rows={rows} n={n}");
            }
        }
        for (rows, n) in [(1, 1), (9, 7), (15, 1024), (40, 2049), (12, 5000)] {
            check::<f32>(rows, n, 1.0);
            check::<f32>(rows, n, 0.7);
            check::<f64>(rows, n, 1.0);
        }
    }

    /// The table ratio of grid references against libm `exp`, and the fallback.
    #[test]
    fn ref_ratio_matches_exp() {
        let step = std::f64::consts::LN_2 / 16.0;
        for n in (0..40_000).map(|i| -(i as f64)) {
            for (a, b) in [(0.0, n), (3.0, 3.0 + n), (-47_000.0, -47_000.0 + n)] {
                let d = b * step - a * step;
                let (want, got) = (d.exp(), ref_ratio(d, 1.0));
                // `d` itself carries the rounding of the two products (the table does not).
                let tol =
                    (4.0 + 2.0 * (a * step).abs() + 2.0 * (b * step).abs()) * f64::EPSILON * want;
                assert!((got - want).abs() <= tol, "{n} {got} {want}");
            }
        }
        for d in [-0.3, -700.5, 0.0] {
            assert_eq!(ref_ratio(d, 1.0), d.exp());
            assert_eq!(ref_ratio(d, 0.5), (d * 0.5).exp());
        }
        // Within 1e−9 of a grid multiple counts as one: 4e−11 relative at most.
        assert!((ref_ratio(-1e-12, 1.0) - (-1e-12f64).exp()).abs() < 1e-11);
        assert_eq!(ref_ratio(f64::NEG_INFINITY, 1.0), 0.0);
    }

    #[test]
    fn special_values() {
        let mut b = Vec::new();
        let inf = f64::INFINITY;
        let mut o = vec![0.0; 3];
        softmax_row(&[0.0, -inf, 0.0], 1.0, &mut o, &mut b);
        assert_eq!(o, vec![0.5, 0.0, 0.5]);
        softmax_row(&[-inf, -inf, -inf], 1.0, &mut o, &mut b);
        assert!(o.iter().all(|v| v.is_nan()));
        softmax_row(&[inf, 1.0, inf], 1.0, &mut o, &mut b);
        assert_eq!(o, vec![0.5, 0.0, 0.5]);
        softmax_row(&[f64::NAN, 1.0, inf], 1.0, &mut o, &mut b);
        assert!(o.iter().all(|v| v.is_nan()));
        softmax_row(&[1e30, -1e30, 1e30], 1.0, &mut o, &mut b);
        assert_eq!(o, vec![0.5, 0.0, 0.5]);
        assert_eq!(logsumexp_row::<f64>(&[], &mut b), f64::NEG_INFINITY);
        // A NaN hidden after a −∞ run in one block, and −∞ blocks before finite ones.
        let mut x = vec![f64::NEG_INFINITY; 3000];
        x[2999] = 0.0;
        let mut o = vec![0.0; 3000];
        softmax_row(&x, 1.0, &mut o, &mut b);
        assert_eq!(o[2999], 1.0);
        x[5] = f64::NAN;
        softmax_row(&x, 1.0, &mut o, &mut b);
        assert!(o[2999].is_nan());
    }
}
