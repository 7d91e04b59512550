//! Sparse (top-k) softmax: softmax over the k largest entries, zero elsewhere.
//!
//! Selection is one pass that keeps the k best `(value, index)` pairs seen so far in a sorted
//! buffer and only touches the buffer for entries above its current k-th value. For inputs in
//! random order that is `O(n + k log k · log n)`; an adversarial order (increasing values) would
//! make it `O(n k)`, so after a budget of insertions the row falls back to introselect
//! (`select_nth_unstable`, worst-case linear). Ties at the k-th value go to the lower index.
//!
//! Special values follow softmax on the selected entries: NaN anywhere → NaN row; `+∞` entries
//! (if selected) share the mass; if every selected entry is `−∞` the row is NaN.

use ndarray::{ArrayViewD, ArrayViewMutD};

use super::layout::{map_rows, Params, RowSpec};
use super::{kern, softmax, Float};
use crate::error::Result;

pub(crate) fn check_k(k: &Params<'_>, n_rows: usize) -> Result<()> {
    k.check(
        n_rows,
        "k",
        |v| v >= 1.0 && v.fract() == 0.0,
        "a positive integer",
    )
}

/// The indices of the k largest entries (ties to the lower index), in `sel`, largest first.
/// Requires a NaN-free row.
pub(crate) fn select_topk<T: Float>(x: &[T], k: usize, sel: &mut Vec<u32>, vals: &mut Vec<f64>) {
    let n = x.len();
    sel.clear();
    vals.clear();
    if k >= n {
        sel.extend(0..n as u32);
        vals.extend(x.iter().map(|v| v.to_f64()));
        return;
    }
    let mut budget = 8 * n / k.max(1) + 64;
    let mut thr = f64::NEG_INFINITY;
    let mut full = false;
    for (ci, chunk) in x.chunks(16).enumerate() {
        // Most chunks hold nothing above the current k-th value: one vectorised test decides
        // that (`thr` is an element value, so it is exact in `T`).
        if full && !kern::any_at_least(chunk, T::from_f64(thr), true) {
            continue;
        }
        for (j, &v) in chunk.iter().enumerate() {
            let i = ci * 16 + j;
            let v = v.to_f64();
            if full && v <= thr {
                continue;
            }
            // Insertion into the sorted (descending) buffer, after equal values (lower index wins).
            let pos = vals.partition_point(|&b| b >= v);
            if full {
                if budget == 0 {
                    return select_fallback(x, k, sel, vals);
                }
                budget -= 1;
                vals.pop();
                sel.pop();
            }
            vals.insert(pos, v);
            sel.insert(pos, i as u32);
            full = vals.len() == k;
            if full {
                thr = vals[k - 1];
            }
        }
    }
}

fn select_fallback<T: Float>(x: &[T], k: usize, sel: &mut Vec<u32>, vals: &mut Vec<f64>) {
    let mut all: Vec<(f64, u32)> = x
        .iter()
        .enumerate()
        .map(|(i, v)| (v.to_f64(), i as u32))
        .collect();
    // Descending value, then ascending index: a total order, so the k-th element is unique.
    let cmp = |a: &(f64, u32), b: &(f64, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    all.select_nth_unstable_by(k - 1, cmp);
    all.truncate(k);
    all.sort_unstable_by(cmp);
    sel.clear();
    vals.clear();
    for (v, i) in all {
        vals.push(v);
        sel.push(i);
    }
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
    if kern::find_nan(x).is_some() {
        out.fill(T::NAN);
        return f64::NAN;
    }
    select_topk(x, k, sel, vals);
    out.fill(T::ZERO);
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
    let s: f64 = vals.iter().map(|&v| (v - m).exp()).sum();
    for (&i, &v) in sel.iter().zip(vals.iter()) {
        out[i as usize] = T::from_f64((v - m).exp() / s);
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
            // Increasing order exhausts the insertion budget and exercises the fallback.
            for inc in [false, true] {
                let x: Vec<f32> = (0..n)
                    .map(|i| {
                        if inc {
                            i as f32
                        } else {
                            ((i * 7919) % 97) as f32
                        }
                    })
                    .collect();
                for k in [1usize, 3, n / 2 + 1] {
                    select_topk(&x, k, &mut sel, &mut vals);
                    let mut idx: Vec<usize> = (0..n).collect();
                    idx.sort_by(|&a, &b| x[b].partial_cmp(&x[a]).unwrap().then(a.cmp(&b)));
                    let want: Vec<u32> = idx[..k.min(n)].iter().map(|&i| i as u32).collect();
                    assert_eq!(sel, want, "n={n} k={k} inc={inc}");
                }
            }
        }
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
