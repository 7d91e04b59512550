//! Sparsity measures of a row (smaller = sparser).
//!
//! * `S₀ = mean|x| / max|x|`;
//! * `S_{1,p} = (l₁/n) / l_p`;
//! * `S*_{q,p} = n^{1/p − 1/q} · l_q / l_p` (q < p), the one of Hurley & Rickard's six
//!   properties; `S*_{1,2} = l₁ / (√n · l₂)`, in `[1/√n, 1]`;
//! * Rényi entropy of order `a` of the row normalised to sum 1 (`a = 1`: Shannon; `a = ∞`:
//!   `−ln max p`); entries must be non-negative.
//!
//! An all-zero row has no scale: every ratio measure is NaN there (0/0), as is an empty row.

use ndarray::ArrayViewD;

use super::layout::reduce_rows;
use super::Float;
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Measure {
    MeanMax,
    L1Lp { p: f64 },
    Hoyer { q: f64, p: f64 },
    Renyi { order: f64 },
}

fn lp(x: &[f64], p: f64) -> f64 {
    if p == f64::INFINITY {
        return x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    }
    let scale = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if scale == 0.0 || !scale.is_finite() {
        return scale;
    }
    // Scaled by the largest magnitude so that |x|^p neither overflows nor underflows.
    let s: f64 = x.iter().map(|v| (v.abs() / scale).powf(p)).sum();
    scale * s.powf(1.0 / p)
}

pub fn measure_row(x: &[f64], m: Measure) -> f64 {
    let n = x.len() as f64;
    if x.is_empty() {
        return f64::NAN;
    }
    match m {
        Measure::MeanMax => lp(x, 1.0) / n / lp(x, f64::INFINITY),
        Measure::L1Lp { p } => lp(x, 1.0) / n / lp(x, p),
        Measure::Hoyer { q, p } => {
            let e = if p == f64::INFINITY { 0.0 } else { 1.0 / p } - 1.0 / q;
            n.powf(e) * lp(x, q) / lp(x, p)
        }
        Measure::Renyi { order } => {
            // The sum is taken of the row divided by its largest entry: the entropy depends
            // only on x / Σx, and a plain Σx overflows for finite rows such as
            // [1e308, 1e308, 0, 0] (whose entropy is ln 2). A NaN entry makes `s` NaN.
            let m = x.iter().fold(0.0f64, |a, &b| a.max(b));
            if m <= 0.0 || !m.is_finite() {
                return f64::NAN;
            }
            let s: f64 = x.iter().map(|&v| v / m).sum();
            if s <= 0.0 || !s.is_finite() {
                return f64::NAN;
            }
            let p = |v: f64| v / m / s;
            if order == 1.0 {
                -x.iter()
                    .filter(|&&v| v > 0.0)
                    .map(|&v| p(v) * p(v).ln())
                    .sum::<f64>()
            } else if order == f64::INFINITY {
                -(1.0 / s).ln()
            } else if order == 0.0 {
                (x.iter().filter(|&&v| v > 0.0).count() as f64).ln()
            } else {
                x.iter().map(|&v| p(v).powf(order)).sum::<f64>().ln() / (1.0 - order)
            }
        }
    }
}

pub fn check_measure(m: Measure) -> Result<()> {
    let bad = |msg: String| Err(Error::invalid(msg));
    match m {
        Measure::MeanMax => Ok(()),
        Measure::L1Lp { p } if p.is_nan() || p < 1.0 => bad(format!("p must be ≥ 1, got {p}")),
        Measure::Hoyer { q, p } if !(q > 0.0 && p > q) => bad(format!(
            "need 0 < q < p for the S* measure, got q={q}, p={p}"
        )),
        Measure::Renyi { order } if order.is_nan() || order < 0.0 => {
            bad(format!("order must be ≥ 0, got {order}"))
        }
        _ => Ok(()),
    }
}

/// One value per row.
pub fn sparsity<T: Float>(
    x: &ArrayViewD<'_, T>,
    axis: usize,
    m: Measure,
    out: &mut [f64],
    threads: Option<usize>,
) -> Result<()> {
    check_measure(m)?;
    if let Measure::Renyi { .. } = m {
        if x.iter().any(|v| *v < T::ZERO) {
            return Err(Error::invalid(
                "the Rényi entropy needs non-negative entries (a probability vector up to scale)",
            ));
        }
    }
    reduce_rows(x, axis, out, threads, |_, xr, w| {
        w.g.clear();
        w.g.extend(xr.iter().map(|v| v.to_f64()));
        Ok(measure_row(&w.g, m))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extremes() {
        let one_hot = [0.0, 0.0, 5.0, 0.0];
        let flat = [2.0; 4];
        let h = Measure::Hoyer { q: 1.0, p: 2.0 };
        assert!((measure_row(&one_hot, h) - 0.5).abs() < 1e-15);
        assert!((measure_row(&flat, h) - 1.0).abs() < 1e-15);
        assert_eq!(measure_row(&one_hot, Measure::MeanMax), 0.25);
        assert_eq!(measure_row(&flat, Measure::MeanMax), 1.0);
        let r = Measure::Renyi { order: 2.0 };
        assert!(measure_row(&one_hot, r).abs() < 1e-15);
        assert!((measure_row(&flat, r) - 4f64.ln()).abs() < 1e-15);
        assert!(measure_row(&[0.0, 0.0], h).is_nan());
        // A finite row whose sum overflows: the entropy is still that of [1/2, 1/2, 0, 0].
        let big = [1e308, 1e308, 0.0, 0.0];
        for order in [0.0, 0.5, 1.0, 2.0, f64::INFINITY] {
            let v = measure_row(&big, Measure::Renyi { order });
            assert!((v - 2f64.ln()).abs() < 1e-15, "order {order}: {v}");
        }
        assert!(measure_row(&[f64::NAN, 1.0], r).is_nan());
        assert!(measure_row(&[f64::INFINITY, 1.0], r).is_nan());
    }
}
