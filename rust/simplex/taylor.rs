//! Taylor softmax of even order k: `f_k(x) = Σ_{m≤k} x^m/m!` (positive for even k),
//! `p_i = f_k(x_i) / Σ_j f_k(x_j)`.
//!
//! Neither shift invariant nor monotone: `f_2` is a parabola with its minimum at −1, so with
//! k = 2 an entry of −3 gets more mass than an entry of −1. Its output does not determine its
//! input (`f_k` is not injective), so the VJP takes `x`: with `Z = Σ f_k(x_j)`,
//! `(Jᵀg)_j = f_{k−1}(x_j)/Z · (g_j − ⟨p, g⟩)` since `f_k' = f_{k−1}`.
//!
//! Special values: `f_k(±∞) = +∞`, so infinite entries (or entries so large that `f_k`
//! overflows f64) share the mass equally; NaN makes the row NaN. Gradients of such rows are 0
//! outside NaN.

use ndarray::{ArrayViewD, ArrayViewMutD};

use super::layout::{map_rows, map_rows2};
use super::Float;
use crate::error::{Error, Result};

pub const MAX_ORDER: usize = 64;

/// `f_k(x)` by Horner on the nested form `1 + x(1 + x/2(1 + x/3(…)))`.
#[inline]
pub fn taylor_f(x: f64, k: usize) -> f64 {
    let mut acc = 1.0;
    for m in (1..=k).rev() {
        acc = 1.0 + x / m as f64 * acc;
    }
    acc
}

pub(crate) fn check_order(order: usize) -> Result<()> {
    if order == 0 || order % 2 != 0 || order > MAX_ORDER {
        return Err(Error::invalid(format!(
            "order must be an even integer in [2, {MAX_ORDER}] (odd orders can be negative), got {order}"
        )));
    }
    Ok(())
}

/// Taylor softmax of one row. `f` is scratch.
pub fn taylor_row<T: Float>(x: &[T], order: usize, out: &mut [T], f: &mut Vec<f64>) {
    f.clear();
    f.extend(x.iter().map(|&v| taylor_f(v.to_f64(), order)));
    let z: f64 = f.iter().sum();
    if z.is_nan() {
        out.fill(T::NAN);
    } else if z.is_infinite() {
        let count = f.iter().filter(|v| v.is_infinite()).count() as f64;
        for (o, &v) in out.iter_mut().zip(f.iter()) {
            *o = T::from_f64(if v.is_infinite() { 1.0 / count } else { 0.0 });
        }
    } else {
        let inv = 1.0 / z;
        for (o, &v) in out.iter_mut().zip(f.iter()) {
            *o = T::from_f64(v * inv);
        }
    }
}

pub fn taylor_softmax<T: Float>(
    x: &ArrayViewD<'_, T>,
    axis: usize,
    order: usize,
    out: &mut ArrayViewMutD<'_, T>,
    threads: Option<usize>,
) -> Result<()> {
    check_order(order)?;
    map_rows(x, axis, out, threads, |_, xr, o, w| {
        taylor_row(xr, order, o, &mut w.f);
        Ok(())
    })
}

/// VJP of Taylor softmax, from the input `x`.
pub fn taylor_softmax_vjp<T: Float>(
    x: &ArrayViewD<'_, T>,
    g: &ArrayViewD<'_, T>,
    axis: usize,
    order: usize,
    out: &mut ArrayViewMutD<'_, T>,
    threads: Option<usize>,
) -> Result<()> {
    check_order(order)?;
    map_rows2(x, g, axis, out, threads, |_, xr, gr, o, w| {
        w.f.clear();
        w.f.extend(xr.iter().map(|&v| taylor_f(v.to_f64(), order)));
        let z: f64 = w.f.iter().sum();
        if z.is_nan() || gr.iter().any(|v| v.is_nan()) {
            o.fill(T::NAN);
            return Ok(());
        }
        if z.is_infinite() {
            o.fill(T::ZERO);
            return Ok(());
        }
        let pg: f64 = w.f.iter().zip(gr).map(|(f, g)| f / z * g.to_f64()).sum();
        for ((o, &v), &g) in o.iter_mut().zip(xr).zip(gr) {
            let d = taylor_f(v.to_f64(), order - 1);
            *o = T::from_f64(d / z * (g.to_f64() - pg));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_and_monotonicity_counterexample() {
        assert_eq!(taylor_f(1.0, 2), 2.5);
        assert!((taylor_f(0.3, 12) - 0.3f64.exp()).abs() < 1e-15);
        let mut f = Vec::new();
        let mut o = vec![0.0; 2];
        taylor_row(&[-3.0f64, -1.0], 2, &mut o, &mut f);
        assert!(
            o[0] > o[1],
            "the survey's counterexample: -3 beats -1 at order 2"
        );
        assert!(check_order(3).is_err() && check_order(0).is_err() && check_order(4).is_ok());
    }
}
