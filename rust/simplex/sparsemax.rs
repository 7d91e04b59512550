//! Sparsemax: the Euclidean projection onto the simplex, `p = max(x − τ, 0)`, `Σp = 1`.
//!
//! The threshold satisfies `max(x) − 1 ≤ τ < max(x)`, so only entries above `max − 1` can be in
//! the support. One vectorised pass finds the maximum (and any NaN); a second compress-stores
//! those candidates (usually a handful: for n = 1024 standard-normal entries about 10, for
//! n = 65 536 about 45). `τ` comes from Michelot's iteration on them (Newton on
//! `Σ (z − τ)₊ = 1`, which only drops candidates), finished by the exact mean over the final
//! support and checked against it, with the sort-based rule of Held et al. as the fallback
//! (see `entmax::solve_threshold`). The output pass stores whole blocks of zeros where every
//! entry is below the threshold. Everything is measured from the maximum (`z = x − max`), which
//! keeps `x − τ` exact for huge magnitudes (1e30 ± 1 is not representable; 0 − (−1) is).
//!
//! The shared row scan ([`scan`]) gives every map of this family the same special-value rules:
//! `−∞` entries get 0, `+∞` entries share the mass, an all-`−∞` row or any NaN is NaN.
//!
//! Performance notes (4096×1024 float32 standard normal, one thread, AVX-512, side by side in
//! one process; see also `entmax.rs`): the row used to take five passes (max, NaN check,
//! candidate test per 8 elements with a scalar push, f64 `relu` over the whole row) plus a sort
//! of the candidates. Fusing max and NaN check, compress-storing candidates, Michelot instead
//! of the sort and skipping all-zero 16-element blocks in the output pass: see the figures in
//! `entmax.rs`.

use ndarray::{ArrayViewD, ArrayViewMutD};

use super::entmax::solve_threshold;
use super::layout::{map_rows, map_rows2};
use super::sparsekern::{self, Isa, Power};
use super::Float;
use crate::error::Result;

/// What a row is, before any threshold search.
pub(crate) enum Scan {
    Normal { m: f64 },
    PosInf { count: usize },
    AllNegInf,
    Nan,
    Empty,
}

pub(crate) fn scan<T: Float>(x: &[T]) -> Scan {
    if x.is_empty() {
        return Scan::Empty;
    }
    // The maximum ignores NaN, so the same pass looks for one separately; ±∞ show in the
    // maximum.
    let (m, nan) = sparsekern::max_nan(Isa::now(), x);
    if nan || !(m > T::NEG_INFINITY && m < T::INFINITY) {
        if nan {
            return Scan::Nan;
        }
        let count = x.iter().filter(|&&v| v == T::INFINITY).count();
        if count > 0 {
            return Scan::PosInf { count };
        }
        let m = T::k_max(x);
        if m == T::NEG_INFINITY {
            return Scan::AllNegInf;
        }
        return Scan::Normal { m: m.to_f64() };
    }
    Scan::Normal { m: m.to_f64() }
}

/// Writes the result for a special row; returns the maximum for a normal one.
pub(crate) fn special_or_max<T: Float>(x: &[T], out: &mut [T]) -> Option<f64> {
    match scan(x) {
        Scan::Normal { m } => Some(m),
        Scan::Empty => None,
        Scan::PosInf { count } => {
            let share = T::from_f64(1.0 / count as f64);
            for (o, &v) in out.iter_mut().zip(x) {
                *o = if v == T::INFINITY { share } else { T::ZERO };
            }
            None
        }
        Scan::AllNegInf | Scan::Nan => {
            out.fill(T::NAN);
            None
        }
    }
}

/// As [`special_or_max`] for the maps `p = (a·(x − m) − τ)₊^β`; a normal row also gets a
/// lower bound of `τ − m` in `[−1, 0)` (see [`sparsekern::max_nan_bound`]).
pub(crate) fn special_or_max_bound<T: Float>(
    x: &[T],
    out: &mut [T],
    isa: Isa,
    a: f64,
    pw: Power,
) -> Option<(f64, f64)> {
    if x.is_empty() {
        return None;
    }
    let (m, nan, lo) = sparsekern::max_nan_bound(isa, x, a, pw);
    if nan || !(m > T::NEG_INFINITY && m < T::INFINITY) {
        return special_or_max(x, out).map(|m| (m, -1.0));
    }
    Some((m.to_f64(), lo))
}

/// Sparsemax threshold (relative to the maximum) from candidates sorted in decreasing order.
pub(crate) fn threshold_sorted(z: &[f64]) -> f64 {
    let mut cum = 0.0;
    let mut tau = z[0] - 1.0;
    for (k, &zk) in z.iter().enumerate() {
        cum += zk;
        let t = (cum - 1.0) / (k + 1) as f64;
        if zk > t {
            tau = t;
        } else {
            break;
        }
    }
    tau
}

/// Sparsemax of one row. `z` is scratch.
pub fn sparsemax_row<T: Float>(x: &[T], out: &mut [T], z: &mut Vec<f64>) {
    sparsekern::with_scratch(|hot| sparsemax_row_in(x, out, z, hot, Isa::now()));
}

/// [`sparsemax_row`] with all its scratch given.
pub(crate) fn sparsemax_row_in<T: Float>(
    x: &[T],
    out: &mut [T],
    z: &mut Vec<f64>,
    hot: &mut Vec<u32>,
    isa: Isa,
) {
    let Some((m, lo)) = special_or_max_bound(x, out, isa, 1.0, Power::Int(1)) else {
        return;
    };
    sparsekern::candidates(isa, x, m, 1.0, lo, z, hot);
    let (tau, _) = solve_threshold(z, Power::Int(1), isa, lo);
    sparsekern::write_output(isa, x, hot, m, 1.0, tau, Power::Int(1), 1.0, out);
}

/// Sparsemax along `axis`.
pub fn sparsemax<T: Float>(
    x: &ArrayViewD<'_, T>,
    axis: usize,
    out: &mut ArrayViewMutD<'_, T>,
    threads: Option<usize>,
) -> Result<()> {
    map_rows(x, axis, out, threads, |_, xr, o, w| {
        sparsemax_row_in(xr, o, &mut w.f, &mut w.idx, Isa::now());
        Ok(())
    })
}

/// VJP of sparsemax from its output: `s ⊙ (g − mean_S(g))`, `S` the support.
pub fn sparsemax_vjp<T: Float>(
    y: &ArrayViewD<'_, T>,
    g: &ArrayViewD<'_, T>,
    axis: usize,
    out: &mut ArrayViewMutD<'_, T>,
    threads: Option<usize>,
) -> Result<()> {
    map_rows2(y, g, axis, out, threads, |_, yr, gr, o, _| {
        sparsemax_vjp_row(yr, gr, o);
        Ok(())
    })
}

pub(crate) fn sparsemax_vjp_row<T: Float>(y: &[T], g: &[T], out: &mut [T]) {
    let (mut s, mut k) = (0.0f64, 0usize);
    for (&p, &h) in y.iter().zip(g) {
        if p > T::ZERO {
            s += h.to_f64();
            k += 1;
        }
    }
    let mean = if k > 0 { s / k as f64 } else { 0.0 };
    for ((o, &p), &h) in out.iter_mut().zip(y).zip(g) {
        *o = if p > T::ZERO {
            T::from_f64(h.to_f64() - mean)
        } else if p.is_nan() {
            T::NAN
        } else {
            T::ZERO
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook O(n log n) algorithm on the whole row.
    fn reference(x: &[f64]) -> Vec<f64> {
        let mut z = x.to_vec();
        z.sort_by(|a, b| b.partial_cmp(a).unwrap());
        let (mut cum, mut tau) = (0.0, 0.0);
        for (k, &v) in z.iter().enumerate() {
            cum += v;
            let t = (cum - 1.0) / (k + 1) as f64;
            if v > t {
                tau = t;
            }
        }
        x.iter().map(|v| (v - tau).max(0.0)).collect()
    }

    #[test]
    fn matches_full_sort() {
        let mut z = Vec::new();
        for n in [1usize, 2, 3, 10, 100, 1000] {
            for scale in [0.01, 1.0, 30.0] {
                let x: Vec<f64> = (0..n)
                    .map(|i| (((i * 2654435761) % 1000) as f64 / 1000.0 - 0.5) * scale)
                    .collect();
                let mut o = vec![0.0; n];
                sparsemax_row(&x, &mut o, &mut z);
                let r = reference(&x);
                for i in 0..n {
                    assert!((o[i] - r[i]).abs() < 1e-12, "n={n} scale={scale}");
                }
                assert!((o.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            }
        }
        let mut o = vec![0.0; 3];
        sparsemax_row(&[1e30, -1e30, 1e30], &mut o, &mut z);
        assert_eq!(o, vec![0.5, 0.0, 0.5]);
        sparsemax_row(&[2.0, 2.0, 2.0], &mut o, &mut z);
        assert!(o.iter().all(|&v| (v - 1.0 / 3.0).abs() < 1e-15));
    }
}
