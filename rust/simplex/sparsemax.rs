//! Sparsemax: the Euclidean projection onto the simplex, `p = max(x − τ, 0)`, `Σp = 1`.
//!
//! The threshold satisfies `max(x) − 1 ≤ τ < max(x)`, so only entries above `max − 1` can be in
//! the support. One vectorised pass finds the maximum; a second collects those candidates
//! (usually a handful: for n = 65 536 standard-normal entries about 45); only the candidates
//! are sorted (`O(n + c log c)`), and `τ` comes from the exact sort-based rule of Held et al. /
//! Michelot applied to them. Everything is measured from the maximum (`z = x − max`), which
//! keeps `x − τ` exact for huge magnitudes (1e30 ± 1 is not representable; 0 − (−1) is).
//!
//! The shared row scan ([`scan`]) gives every map of this family the same special-value rules:
//! `−∞` entries get 0, `+∞` entries share the mass, an all-`−∞` row or any NaN is NaN.

use ndarray::{ArrayViewD, ArrayViewMutD};

use super::layout::{map_rows, map_rows2};
use super::{kern, Float};
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
    let m = T::k_max(x);
    // The max kernel may drop a NaN, so look for one separately (a vectorised OR of
    // comparisons, cheaper than the f64 sum this used to take); ±∞ show in the maximum.
    if kern::has_nan(x) || !(m > T::NEG_INFINITY && m < T::INFINITY) {
        if kern::find_nan(x).is_some() {
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

/// `z = (x − m)·a` for the entries with `z > −1`, sorted in decreasing order.
pub(crate) fn sorted_candidates<T: Float>(x: &[T], m: f64, a: f64, z: &mut Vec<f64>) {
    unsorted_candidates(x, m, a, z);
    z.sort_unstable_by(|a, b| b.total_cmp(a));
}

/// `z = (x − m)·a` for the entries with `z > −1`, in row order.
pub(crate) fn unsorted_candidates<T: Float>(x: &[T], m: f64, a: f64, z: &mut Vec<f64>) {
    z.clear();
    // `>=`: for huge maxima `m − 1/a` rounds to `m`, and the maximum must stay a candidate.
    let lo = m - 1.0 / a;
    // `lo` rounded to the element type: if it rounds up, no element lies between the two,
    // and if it rounds down the test only lets more chunks through to the exact check.
    let lo_t = T::from_f64(lo);
    for c in x.chunks(8) {
        // Most chunks hold no candidate; one vectorised test over the chunk says so.
        if !kern::any_at_least(c, lo_t, false) {
            continue;
        }
        for &v in c {
            let v = v.to_f64();
            if v >= lo {
                let d = (v - m) * a;
                if d > -1.0 {
                    z.push(d);
                }
            }
        }
    }
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
    let Some(m) = special_or_max(x, out) else {
        return;
    };
    sorted_candidates(x, m, 1.0, z);
    let tau = threshold_sorted(z);
    kern::relu_shift(x, m, tau, out);
}

/// Sparsemax along `axis`.
pub fn sparsemax<T: Float>(
    x: &ArrayViewD<'_, T>,
    axis: usize,
    out: &mut ArrayViewMutD<'_, T>,
    threads: Option<usize>,
) -> Result<()> {
    map_rows(x, axis, out, threads, |_, xr, o, w| {
        sparsemax_row(xr, o, &mut w.f);
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
