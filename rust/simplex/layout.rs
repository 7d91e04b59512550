//! Rows along any axis of a strided n-d array.
//!
//! A map along `axis` is a loop over the *rows* (1-d lanes along `axis`) of the array, taken in
//! C order of the remaining dimensions. A row whose elements are adjacent in memory (stride 1)
//! is handed to the kernel in place; any other row (another axis, a transposed or sliced view,
//! a negative stride) is copied into a per-thread scratch row first and, for outputs, copied
//! back after. Rows go to the pool in chunks big enough to amortise scheduling; arrays below
//! [`PARALLEL_MIN_ELEMENTS`] stay on the calling thread.

use ndarray::{ArrayViewD, ArrayViewMutD};
use rayon::prelude::*;

use super::Float;
use crate::error::{Error, Result};
use crate::parallel;

/// Arrays with fewer elements than this run serially: the pool's wake-up costs more.
pub const PARALLEL_MIN_ELEMENTS: usize = 1 << 15;
/// [`PARALLEL_MIN_ELEMENTS`] for the softmax family's maps, a few vector operations per
/// element: below this many the pool's wake-up (tens of µs in a VM) costs more than the second
/// thread saves. Paired bursts of 1 and 2 threads (Zen 4 VM, float32, rows of 1024): softmax
/// at 32 768, 65 536, 131 072 and 262 144 elements ran 0.52, 0.67, 0.88 and 1.30× as fast on
/// two threads (log_softmax 0.48, 0.93, 0.87); sparsemax and entmax, many times the work per
/// element, break even near `PARALLEL_MIN_ELEMENTS` or below it.
pub(crate) const CHEAP_PARALLEL_MIN_ELEMENTS: usize = 1 << 18;

/// `threads` for a map over `elements` elements that only gains from the pool from `min`
/// elements on: one thread below (an invalid count is passed on, to be reported).
pub(crate) fn threads_from(threads: Option<usize>, elements: usize, min: usize) -> Option<usize> {
    let valid = threads.is_none_or(|t| (1..=parallel::MAX_THREADS).contains(&t));
    if elements < min && valid {
        Some(1)
    } else {
        threads
    }
}

/// Checks a requested thread count (`None` = default) whatever the array size, so that an
/// invalid `num_threads` fails the same way for small arrays (which never reach the pool) as
/// for large ones.
pub(crate) fn check_threads(threads: Option<usize>) -> Result<()> {
    match threads {
        Some(t) => parallel::resolve_threads(Some(t)).map(|_| ()),
        None => Ok(()),
    }
}

/// `v` for a message: plain decimal for ordinary magnitudes, exponent form otherwise (Rust's
/// `{}` prints `1e-300` as a 300-digit decimal).
pub(crate) fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || !a.is_finite() || (1e-4..1e16).contains(&a) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

/// Whether elements of a view with these (element) strides may share memory: sorted by
/// |stride|, each axis of length > 1 must step past every offset the faster axes reach
/// (ndarray's own test for views it builds). Exact for every view made by slicing,
/// transposing or reshaping a fresh array; conservative (reports overlap) only for some
/// interleaved layouts that need `as_strided`. A zero stride on an axis of length > 1 fails it.
pub(crate) fn may_overlap(shape: &[usize], strides: &[isize]) -> bool {
    if shape.contains(&0) {
        return false;
    }
    let mut live: Vec<(usize, usize)> = shape
        .iter()
        .zip(strides)
        .filter(|(&n, _)| n > 1)
        .map(|(&n, &s)| (s.unsigned_abs(), n))
        .collect();
    live.sort_unstable();
    let mut reach = 0usize;
    for (s, n) in live {
        if s <= reach {
            return true;
        }
        reach = match (n - 1).checked_mul(s).and_then(|o| o.checked_add(reach)) {
            Some(r) => r,
            None => return true,
        };
    }
    false
}

/// Elements per parallel task (rounded to whole rows).
const TASK_ELEMENTS: usize = 1 << 14;

/// The row structure of an array shape: which axis, how long, how many rows.
#[derive(Clone, Debug)]
pub struct RowSpec {
    shape: Vec<usize>,
    axis: usize,
}

impl RowSpec {
    /// `axis` must be a valid (non-negative) axis of `shape`; a 0-d array is one row of one.
    pub fn new(shape: &[usize], axis: usize) -> Result<Self> {
        if shape.is_empty() {
            return Ok(RowSpec {
                shape: vec![1],
                axis: 0,
            });
        }
        if axis >= shape.len() {
            return Err(Error::invalid(format!(
                "axis {axis} is out of bounds for an array of {} dimensions",
                shape.len()
            )));
        }
        Ok(RowSpec {
            shape: shape.to_vec(),
            axis,
        })
    }

    /// Elements per row.
    pub fn len(&self) -> usize {
        self.shape[self.axis]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of rows (product of the other dimensions).
    pub fn n_rows(&self) -> usize {
        self.outer_shape().iter().product()
    }

    /// The shape with `axis` removed (the shape of a per-row result).
    pub fn outer_shape(&self) -> Vec<usize> {
        let mut s = self.shape.clone();
        s.remove(self.axis);
        s
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn axis(&self) -> usize {
        self.axis
    }
}

/// A per-row parameter: one value for every row, or one per row (C order of the other axes).
#[derive(Clone, Copy, Debug)]
pub struct Params<'a>(pub &'a [f64]);

impl<'a> Params<'a> {
    pub const ONE: Params<'static> = Params(&[1.0]);

    #[inline]
    pub fn get(&self, row: usize) -> f64 {
        if self.0.len() == 1 {
            self.0[0]
        } else {
            self.0[row]
        }
    }

    /// Checks the length against the number of rows and every value with `ok`.
    pub fn check(
        &self,
        n_rows: usize,
        name: &str,
        ok: impl Fn(f64) -> bool,
        what: &str,
    ) -> Result<()> {
        if self.0.len() != 1 && self.0.len() != n_rows {
            return Err(Error::invalid(format!(
                "{name} has {} values; expected 1 or one per row ({n_rows})",
                self.0.len()
            )));
        }
        if let Some(v) = self.0.iter().find(|v| !ok(**v)) {
            return Err(Error::invalid(format!(
                "{name} must be {what}, got {}",
                fmt_num(*v)
            )));
        }
        Ok(())
    }
}

/// Raw access to the rows of one array. Reads and writes go through raw pointers because the
/// rows are handed to several threads at once; rows are disjoint, which is what makes this
/// sound (outputs are checked not to overlap themselves, [`may_overlap`]).
pub(crate) struct Rows<T> {
    ptr: *mut T,
    outer_shape: Vec<usize>,
    outer_strides: Vec<isize>,
    /// Row `r` starts at `r · flat` when the outer axes collapse into one (every 2-d array,
    /// any C-ordered one): saves the per-axis divisions of [`Rows::offset`], which cost about
    /// as much as a 1024-wide softmax row's scale pass.
    flat: Option<isize>,
    stride: isize,
    len: usize,
    writable: bool,
}

// SAFETY: `Rows` is only built from views that outlive the call that uses it; distinct rows of
// an output never overlap (self-overlapping outputs are rejected), and inputs are never written.
unsafe impl<T: Send> Send for Rows<T> {}
// SAFETY: as above; shared access hands out distinct rows to distinct threads.
unsafe impl<T: Sync> Sync for Rows<T> {}

impl<T: Float> Rows<T> {
    fn build(
        ptr: *mut T,
        shape: &[usize],
        strides: &[isize],
        spec: &RowSpec,
        writable: bool,
    ) -> Result<Self> {
        let (shape, strides): (Vec<usize>, Vec<isize>) = if shape.is_empty() {
            (vec![1], vec![1])
        } else {
            (shape.to_vec(), strides.to_vec())
        };
        if shape != spec.shape {
            return Err(Error::invalid(format!(
                "array of shape {shape:?} does not match the expected shape {:?}",
                spec.shape
            )));
        }
        let axis = spec.axis;
        // Rows of an output are written from several threads through raw pointers: any
        // self-overlap (not only a zero stride: `as_strided` can make strides that alias
        // elements of different rows) would be a data race and garbage output.
        if writable && may_overlap(&shape, &strides) {
            return Err(Error::invalid(format!(
                "out has overlapping elements (shape {shape:?}, element strides {strides:?})"
            )));
        }
        let mut outer_shape = shape.clone();
        outer_shape.remove(axis);
        let mut outer_strides = strides.clone();
        let stride = outer_strides.remove(axis);
        // Axes of length 1 never contribute to an offset (and may carry any stride).
        let live: Vec<(usize, isize)> = outer_shape
            .iter()
            .zip(&outer_strides)
            .filter(|(&n, _)| n > 1)
            .map(|(&n, &s)| (n, s))
            .collect();
        let flat = match live.last() {
            None => Some(0),
            Some(&(_, last)) => live
                .windows(2)
                .all(|w| w[0].1 == w[1].1 * w[1].0 as isize)
                .then_some(last),
        };
        Ok(Rows {
            ptr,
            outer_shape,
            outer_strides,
            flat,
            stride,
            len: shape[axis],
            writable,
        })
    }

    pub(crate) fn input(x: &ArrayViewD<'_, T>, spec: &RowSpec) -> Result<Self> {
        Self::build(x.as_ptr() as *mut T, x.shape(), x.strides(), spec, false)
    }

    pub(crate) fn output(x: &mut ArrayViewMutD<'_, T>, spec: &RowSpec) -> Result<Self> {
        let shape = x.shape().to_vec();
        let strides = x.strides().to_vec();
        Self::build(x.as_mut_ptr(), &shape, &strides, spec, true)
    }

    #[inline]
    fn offset(&self, mut r: usize) -> isize {
        if let Some(f) = self.flat {
            return r as isize * f;
        }
        let mut off = 0isize;
        for d in (0..self.outer_shape.len()).rev() {
            let n = self.outer_shape[d];
            off += (r % n) as isize * self.outer_strides[d];
            r /= n;
        }
        off
    }

    #[inline]
    fn contiguous(&self) -> bool {
        self.stride == 1 || self.len <= 1
    }

    /// Row `r` as a slice: in place when contiguous, else copied into `buf`.
    #[inline]
    pub(crate) fn row<'b>(&self, r: usize, buf: &'b mut Vec<T>) -> &'b [T] {
        // SAFETY: the offset of row r and its `len` elements at `stride` lie inside the array
        // the view described (ndarray guarantees every in-bounds index is addressable).
        unsafe {
            let base = self.ptr.offset(self.offset(r));
            if self.contiguous() {
                return std::slice::from_raw_parts(base, self.len);
            }
            buf.clear();
            buf.extend((0..self.len).map(|j| *base.offset(j as isize * self.stride)));
            &buf[..]
        }
    }

    /// Row `r` for writing: in place when contiguous, else `buf` (then call [`Rows::commit`]).
    #[inline]
    pub(crate) fn row_mut<'b>(&self, r: usize, buf: &'b mut Vec<T>) -> &'b mut [T] {
        debug_assert!(self.writable);
        if self.contiguous() {
            // SAFETY: as in `row`; rows of an output are disjoint and each row is handed to one
            // task only, so this is the only live reference to these elements.
            unsafe { std::slice::from_raw_parts_mut(self.ptr.offset(self.offset(r)), self.len) }
        } else {
            buf.clear();
            buf.resize(self.len, T::ZERO);
            &mut buf[..]
        }
    }

    /// Copies a row computed in a scratch buffer back (no-op for rows written in place).
    #[inline]
    pub(crate) fn commit(&self, r: usize, data: &[T]) {
        if self.contiguous() {
            return;
        }
        // SAFETY: as in `row_mut`.
        unsafe {
            let base = self.ptr.offset(self.offset(r));
            for (j, &v) in data.iter().enumerate() {
                *base.offset(j as isize * self.stride) = v;
            }
        }
    }
}

/// One value per row, written from many threads (row `r` to slot `r`).
pub(crate) struct PerRow<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: each row index is written by exactly one task.
unsafe impl<T: Send> Send for PerRow<T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Sync for PerRow<T> {}

impl<T: Copy> PerRow<T> {
    pub(crate) fn new(v: &mut [T]) -> Self {
        PerRow {
            ptr: v.as_mut_ptr(),
            len: v.len(),
        }
    }

    #[inline]
    pub(crate) fn set(&self, r: usize, v: T) {
        assert!(r < self.len);
        // SAFETY: in bounds (asserted); row r is owned by the calling task.
        unsafe { *self.ptr.add(r) = v }
    }
}

/// Per-thread scratch space.
pub(crate) struct Work<T> {
    pub a: Vec<T>,
    pub b: Vec<T>,
    pub c: Vec<T>,
    pub f: Vec<f64>,
    pub g: Vec<f64>,
    pub idx: Vec<u32>,
    /// Set by a kernel that wrote with non-temporal stores and left them unfenced: the store
    /// fence runs when this scratch is dropped, on the thread that wrote, before its part of
    /// the call completes (one fence per thread and task batch instead of one per row).
    pub unfenced: bool,
}

impl<T> Drop for Work<T> {
    fn drop(&mut self) {
        if self.unfenced {
            super::exp::streaming_done();
        }
    }
}

impl<T> Work<T> {
    pub(crate) fn new() -> Self {
        Work {
            a: Vec::new(),
            b: Vec::new(),
            c: Vec::new(),
            f: Vec::new(),
            g: Vec::new(),
            idx: Vec::new(),
            unfenced: false,
        }
    }
}

/// Runs `f(row, work)` for every row, in parallel when the array is big enough.
pub(crate) fn run_rows<T: Float>(
    spec: &RowSpec,
    threads: Option<usize>,
    f: impl Fn(usize, &mut Work<T>) -> Result<()> + Sync,
) -> Result<()> {
    // Validated here, before the small-array shortcut below, so that a bad count is an error
    // whatever the size of the array.
    check_threads(threads)?;
    let n_rows = spec.n_rows();
    let len = spec.len().max(1);
    let total = n_rows.saturating_mul(len);
    let rows_per_task = (TASK_ELEMENTS / len).max(1);
    let n_tasks = n_rows.div_ceil(rows_per_task);
    if total < PARALLEL_MIN_ELEMENTS || parallel::effective_threads(threads, n_tasks)? <= 1 {
        let mut w = Work::new();
        for r in 0..n_rows {
            f(r, &mut w)?;
        }
        return Ok(());
    }
    // `par` is true here: the one-thread case returned above.
    parallel::run(threads, n_tasks, |_| {
        (0..n_tasks)
            .into_par_iter()
            .try_for_each_init(Work::new, |w, t| {
                let end = ((t + 1) * rows_per_task).min(n_rows);
                for r in t * rows_per_task..end {
                    f(r, w)?;
                }
                Ok(())
            })
    })?
}

/// The common case: one input, one output of the same shape, a per-row kernel on slices.
pub(crate) fn map_rows<T: Float>(
    x: &ArrayViewD<'_, T>,
    axis: usize,
    out: &mut ArrayViewMutD<'_, T>,
    threads: Option<usize>,
    f: impl Fn(usize, &[T], &mut [T], &mut Work<T>) -> Result<()> + Sync,
) -> Result<()> {
    let spec = RowSpec::new(x.shape(), axis)?;
    let xi = Rows::input(x, &spec)?;
    let oo = Rows::output(out, &spec)?;
    if out.is_empty() {
        // Nothing to write: without this, an empty axis with 10⁹ rows would loop over 10⁹
        // empty rows (a minute, uninterruptible with the GIL released).
        return check_threads(threads);
    }
    run_rows::<T>(&spec, threads, |r, w| {
        let mut xa = std::mem::take(&mut w.a);
        let mut ob = std::mem::take(&mut w.b);
        let res = {
            let xr = xi.row(r, &mut xa);
            let orow = oo.row_mut(r, &mut ob);
            let res = f(r, xr, orow, w);
            oo.commit(r, orow);
            res
        };
        w.a = xa;
        w.b = ob;
        res
    })
}

/// Two inputs of the same shape (output and incoming gradient), one output: the VJPs.
pub(crate) fn map_rows2<T: Float>(
    y: &ArrayViewD<'_, T>,
    g: &ArrayViewD<'_, T>,
    axis: usize,
    out: &mut ArrayViewMutD<'_, T>,
    threads: Option<usize>,
    f: impl Fn(usize, &[T], &[T], &mut [T], &mut Work<T>) -> Result<()> + Sync,
) -> Result<()> {
    let spec = RowSpec::new(y.shape(), axis)?;
    let yi = Rows::input(y, &spec)?;
    let gi = Rows::input(g, &spec)?;
    let oo = Rows::output(out, &spec)?;
    if out.is_empty() {
        // Nothing to write (see `map_rows`).
        return check_threads(threads);
    }
    run_rows::<T>(&spec, threads, |r, w| {
        let mut ya = std::mem::take(&mut w.a);
        let mut gb = std::mem::take(&mut w.b);
        let mut oc = std::mem::take(&mut w.c);
        let res = {
            let yr = yi.row(r, &mut ya);
            let gr = gi.row(r, &mut gb);
            let orow = oo.row_mut(r, &mut oc);
            let res = f(r, yr, gr, orow, w);
            oo.commit(r, orow);
            res
        };
        w.a = ya;
        w.b = gb;
        w.c = oc;
        res
    })
}

/// One input, one value per row (reductions such as logsumexp): `out` has `n_rows` slots.
pub(crate) fn reduce_rows<T: Float, R: Copy + Send + Sync>(
    x: &ArrayViewD<'_, T>,
    axis: usize,
    out: &mut [R],
    threads: Option<usize>,
    f: impl Fn(usize, &[T], &mut Work<T>) -> Result<R> + Sync,
) -> Result<()> {
    let spec = RowSpec::new(x.shape(), axis)?;
    if out.len() != spec.n_rows() {
        return Err(Error::Internal(format!(
            "reduction output has {} slots for {} rows",
            out.len(),
            spec.n_rows()
        )));
    }
    let xi = Rows::input(x, &spec)?;
    let o = PerRow::new(out);
    run_rows::<T>(&spec, threads, |r, w| {
        let mut xa = std::mem::take(&mut w.a);
        let res = f(r, xi.row(r, &mut xa), w);
        w.a = xa;
        o.set(r, res?);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    /// Small arrays run on one thread whatever was asked; large ones keep the request; an
    /// invalid count is passed on untouched, so it is still reported.
    #[test]
    fn threads_from_small_arrays() {
        let min = CHEAP_PARALLEL_MIN_ELEMENTS;
        assert_eq!(threads_from(None, min - 1, min), Some(1));
        assert_eq!(threads_from(Some(8), 10, min), Some(1));
        assert_eq!(threads_from(None, min, min), None);
        assert_eq!(threads_from(Some(8), min, min), Some(8));
        assert_eq!(threads_from(Some(0), 10, min), Some(0));
        let big = parallel::MAX_THREADS + 1;
        assert_eq!(threads_from(Some(big), 10, min), Some(big));
    }

    /// Self-overlap of outputs: zero and aliasing strides are refused (they made parallel
    /// rows race and gave garbage), every slice/transpose/reversal of a fresh array is not.
    #[test]
    fn overlapping_outputs() {
        assert!(may_overlap(&[4, 6], &[1, 1]));
        assert!(may_overlap(&[4, 6], &[0, 1]));
        assert!(!may_overlap(&[4, 6], &[6, -1]));
        assert!(may_overlap(&[4, 6], &[3, 1]));
        // every third column of a 4×18 array: strides 18 and 3 (18 < 3·6 yet distinct)
        assert!(!may_overlap(&[4, 6], &[18, 3]));
        assert!(!may_overlap(&[6, 4], &[1, 6]));
        assert!(!may_overlap(&[4, 6], &[-24, -2]));
        assert!(!may_overlap(&[1, 6], &[0, 1]));
        assert!(!may_overlap(&[0, 6], &[0, 0]));
        assert!(!may_overlap(&[], &[]));
        assert!(may_overlap(&[3, 3], &[isize::MAX / 2, isize::MAX / 2 + 1]));
        let spec = RowSpec::new(&[4, 6], 1).unwrap();
        let build = |strides: &[isize]| {
            Rows::<f64>::build(std::ptr::null_mut(), &[4, 6], strides, &spec, true).map(|_| ())
        };
        let err = build(&[1, 1]).unwrap_err().to_string();
        assert!(err.contains("out has overlapping elements"), "{err}");
        assert!(build(&[0, 1]).is_err());
        assert!(build(&[18, 3]).is_ok());
        // inputs may overlap (a broadcast input is fine)
        assert!(Rows::<f64>::build(std::ptr::null_mut(), &[4, 6], &[0, 1], &spec, false).is_ok());
    }

    /// A bad thread count is reported for small arrays too (they never reach the pool), and
    /// an empty output returns before visiting its (possibly 10¹²) empty rows.
    #[test]
    fn threads_checked_and_empty_outputs_skipped() {
        let x = ArrayD::<f64>::zeros(IxDyn(&[2, 3]));
        let mut out = ArrayD::<f64>::zeros(IxDyn(&[2, 3]));
        for bad in [Some(0), Some(parallel::MAX_THREADS + 1)] {
            let r = map_rows(&x.view(), 1, &mut out.view_mut(), bad, |_, _, _, _| Ok(()));
            assert!(r.is_err(), "{bad:?}");
            let mut sums = vec![0.0; 2];
            assert!(reduce_rows(&x.view(), 1, &mut sums, bad, |_, _, _| Ok(0.0)).is_err());
        }
        let e = ArrayD::<f64>::zeros(IxDyn(&[1 << 40, 0]));
        let mut eo = ArrayD::<f64>::zeros(IxDyn(&[1 << 40, 0]));
        let visited = std::sync::atomic::AtomicUsize::new(0);
        map_rows(&e.view(), 1, &mut eo.view_mut(), None, |_, _, _, _| {
            visited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
        assert_eq!(visited.into_inner(), 0);
        assert!(
            map_rows(&e.view(), 1, &mut eo.view_mut(), Some(0), |_, _, _, _| Ok(
                ()
            ))
            .is_err()
        );
    }

    #[test]
    fn numbers_in_messages() {
        assert_eq!(fmt_num(1e-300), "1e-300");
        assert_eq!(fmt_num(1e300), "1e300");
        assert_eq!(fmt_num(-2.5), "-2.5");
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(f64::NAN), "NaN");
        assert_eq!(fmt_num(f64::NEG_INFINITY), "-inf");
        assert_eq!(fmt_num(1e7), "10000000");
    }

    #[test]
    fn rows_along_every_axis() {
        let x = ArrayD::from_shape_fn(IxDyn(&[2, 3, 4]), |i| {
            (i[0] * 100 + i[1] * 10 + i[2]) as f64
        });
        for axis in 0..3 {
            let mut out = ArrayD::zeros(IxDyn(&[2, 3, 4]));
            map_rows(
                &x.view(),
                axis,
                &mut out.view_mut(),
                Some(1),
                |_, r, o, _| {
                    let s: f64 = r.iter().sum();
                    for (a, b) in o.iter_mut().zip(r) {
                        *a = *b - s;
                    }
                    Ok(())
                },
            )
            .unwrap();
            let s = x
                .sum_axis(ndarray::Axis(axis))
                .insert_axis(ndarray::Axis(axis));
            assert_eq!(out, &x - &s);
        }
        let t = x.t();
        let mut out = ArrayD::zeros(IxDyn(&[4, 3, 2]));
        let mut sums = vec![0.0; 12];
        reduce_rows(&t, 2, &mut sums, None, |_, r, _| Ok(r.iter().sum::<f64>())).unwrap();
        assert_eq!(sums[0], 100.0);
        map_rows(&t, 2, &mut out.view_mut(), Some(2), |_, r, o, _| {
            o.copy_from_slice(r);
            Ok(())
        })
        .unwrap();
        assert_eq!(out, t);
        assert!(RowSpec::new(&[2, 3], 2).is_err());
        // The flat row offset against the per-axis one: C order, sliced, transposed, length-1
        // axes (numpy gives those arbitrary strides), negative strides.
        let cases: [(&[usize], &[isize], Option<isize>); 6] = [
            (&[4, 3, 5], &[15, 5, 1], Some(5)),
            (&[4, 3, 5], &[30, 10, 1], Some(10)),
            (&[4, 3, 5], &[5, 20, 1], None),
            (&[2, 1, 3, 7], &[21, 999, 7, 1], Some(7)),
            (&[2, 1, 3, 7], &[5, 5, 7, 1], None),
            (&[4, 3, 5], &[-15, -5, 1], Some(-5)),
        ];
        for (shape, strides, want) in cases {
            let spec = RowSpec::new(shape, shape.len() - 1).unwrap();
            let rows =
                Rows::<f64>::build(std::ptr::null_mut(), shape, strides, &spec, false).unwrap();
            assert_eq!(rows.flat, want, "{shape:?} {strides:?}");
            let slow = Rows { flat: None, ..rows };
            let fast =
                Rows::<f64>::build(std::ptr::null_mut(), shape, strides, &spec, false).unwrap();
            for r in 0..spec.n_rows() {
                assert_eq!(
                    fast.offset(r),
                    slow.offset(r),
                    "{shape:?} {strides:?} row {r}"
                );
            }
        }
    }
}
