//! Bindings for the softmax family (`probcraft.softmax`, `probcraft.losses`).
//!
//! These are private (`_core._sm_*`): the typed façade in `python/probcraft/softmax.py`
//! normalises axes, promotes dtypes, broadcasts parameters to one value per row and validates
//! `out=`; here arrays arrive as float32/float64 ndarrays (any strides) and go straight to the
//! kernels with the GIL released. Fresh outputs are allocated uninitialised: every kernel
//! writes every element of its output. Every allocation sized by the caller's shapes is
//! fallible (a `MemoryError`, not an abort or a panic): a broadcast view or an empty axis can
//! ask for far more memory than the input occupies.

use ndarray::{ArrayViewD, ArrayViewMutD, IxDyn};
use numpy::{
    Element, IntoPyArray, PyArrayDyn, PyArrayMethods, PyReadonlyArray1, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyMemoryError, PyTypeError};
use pyo3::prelude::*;

use super::guarded;
use crate::simplex::layout::{check_threads, fmt_num};
use crate::simplex::losses::{self, Loss, Reduction};
use crate::simplex::perturb::Noise;
use crate::simplex::sparsity::Measure;
use crate::simplex::{
    entmax, layout::RowSpec, perturb, softmax, sparsemax, sparsity, taylor, topk,
};
use crate::simplex::{Float, Params};

/// A fresh, uninitialised C-ordered array. `PyArrayDyn::new` panics when numpy cannot
/// allocate (e.g. the output of a broadcast view of 10¹³ elements); this raises the
/// `MemoryError` numpy set instead.
fn new_array<'py, T: Element>(
    py: Python<'py>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    use numpy::npyffi::{npy_intp, NpyTypes, PY_ARRAY_API};
    use numpy::PyArrayDescrMethods;
    // Shapes come from existing numpy arrays, whose dimensions fit npy_intp.
    let mut dims: Vec<npy_intp> = shape.iter().map(|&d| d as npy_intp).collect();
    // SAFETY: `dims` holds `dims.len()` (≤ 32, numpy's limit for arrays reaching here)
    // dimensions; null strides and data ask numpy for a fresh C-ordered buffer;
    // `PyArray_NewFromDescr` steals the descriptor reference `into_dtype_ptr` hands over. A
    // null return (out of memory, or a shape too large) becomes the Python error numpy set,
    // and a non-null one is an ndarray of element type `T`, so the unchecked cast holds.
    unsafe {
        let ptr = PY_ARRAY_API.PyArray_NewFromDescr(
            py,
            PY_ARRAY_API.get_type_object(py, NpyTypes::PyArray_Type),
            T::get_dtype(py).into_dtype_ptr(),
            dims.len() as std::os::raw::c_int,
            dims.as_mut_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
            std::ptr::null_mut(),
        );
        Ok(Bound::from_owned_ptr_or_err(py, ptr)?.cast_into_unchecked())
    }
}

/// `vec![v; n]` that raises `MemoryError` instead of aborting the process: per-row results of
/// an empty axis (`logsumexp(np.empty((0, 10**11)), axis=0)`) can be huge for a tiny input.
fn filled_vec<V: Clone>(n: usize, v: V) -> PyResult<Vec<V>> {
    let mut out = Vec::new();
    out.try_reserve_exact(n)
        .map_err(|_| PyMemoryError::new_err(format!("cannot allocate the {n} per-row results")))?;
    out.resize(n, v);
    Ok(out)
}

/// The Taylor order from the façade's float parameter, without the saturating `as usize`
/// cast (which reported −2 as "got 0").
fn taylor_order(p: &[f64]) -> crate::Result<usize> {
    let k = p.first().copied().unwrap_or(f64::NAN);
    if k.fract() == 0.0 && (0.0..=taylor::MAX_ORDER as f64).contains(&k) {
        Ok(k as usize)
    } else {
        Err(crate::Error::invalid(format!(
            "order must be an even integer in [2, {}], got {}",
            taylor::MAX_ORDER,
            fmt_num(k)
        )))
    }
}

/// Runs a shape-preserving kernel into `out` (if given) or a fresh array.
fn map_into<'py, T: Float + Element>(
    py: Python<'py>,
    x: &Bound<'py, PyArrayDyn<T>>,
    out: Option<&Bound<'py, PyAny>>,
    f: impl FnOnce(&ArrayViewD<'_, T>, &mut ArrayViewMutD<'_, T>) -> crate::Result<()> + Send,
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    let xr = x.try_readonly()?;
    let o = match out {
        Some(o) => o.cast::<PyArrayDyn<T>>()?.clone(),
        // Uninitialised: the array is fully written by the kernel before Python can see it
        // (every kernel writes every element of its output, including on error-free special
        // rows); if the kernel fails the array is dropped unseen.
        None => new_array::<T>(py, xr.shape())?,
    };
    {
        let mut ow = o.try_readwrite()?;
        let xv = xr.as_array();
        let mut ov = ow.as_array_mut();
        guarded(py, || f(&xv, &mut ov))?;
    }
    Ok(o)
}

/// Same with two inputs of one shape (VJPs).
fn map2_into<'py, T: Float + Element>(
    py: Python<'py>,
    y: &Bound<'py, PyArrayDyn<T>>,
    g: &Bound<'py, PyAny>,
    f: impl FnOnce(
            &ArrayViewD<'_, T>,
            &ArrayViewD<'_, T>,
            &mut ArrayViewMutD<'_, T>,
        ) -> crate::Result<()>
        + Send,
) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    let g = g
        .cast::<PyArrayDyn<T>>()
        .map_err(|_| PyTypeError::new_err("grad must have the same dtype as y"))?;
    let yr = y.try_readonly()?;
    let gr = g.try_readonly()?;
    if yr.shape() != gr.shape() {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "grad has shape {:?} but y has shape {:?}",
            gr.shape(),
            yr.shape()
        )));
    }
    // Fully written by the kernel (see `map_into`).
    let o = new_array::<T>(py, yr.shape())?;
    {
        let mut ow = o.try_readwrite()?;
        let (yv, gv) = (yr.as_array(), gr.as_array());
        let mut ov = ow.as_array_mut();
        guarded(py, || f(&yv, &gv, &mut ov))?;
    }
    Ok(o)
}

fn outer_shape(shape: &[usize], axis: usize) -> PyResult<Vec<usize>> {
    Ok(RowSpec::new(shape, axis)
        .map_err(super::to_pyerr)?
        .outer_shape())
}

macro_rules! dispatch {
    ($x:expr, |$a:ident : $t:ident| $body:expr) => {{
        if let Ok($a) = $x.cast::<PyArrayDyn<f32>>() {
            #[allow(unused)]
            type $t = f32;
            $body.map(|v| v.into_any())
        } else if let Ok($a) = $x.cast::<PyArrayDyn<f64>>() {
            #[allow(unused)]
            type $t = f64;
            $body.map(|v| v.into_any())
        } else {
            Err(PyTypeError::new_err(
                "expected a float32 or float64 numpy array (the Python wrappers convert other inputs)",
            ))
        }
    }};
}

#[pyfunction]
#[pyo3(signature = (x, axis, temperature, out=None, num_threads=None, log=false))]
fn _sm_softmax<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    axis: usize,
    temperature: PyReadonlyArray1<'py, f64>,
    out: Option<&Bound<'py, PyAny>>,
    num_threads: Option<usize>,
    log: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let t = temperature.as_slice()?;
    dispatch!(x, |a: T| map_into(py, a, out, |xv, ov| {
        if log {
            softmax::log_softmax::<T>(xv, axis, Params(t), ov, num_threads)
        } else {
            softmax::softmax::<T>(xv, axis, Params(t), ov, num_threads)
        }
    }))
}

#[pyfunction]
#[pyo3(signature = (x, axis, num_threads=None))]
fn _sm_logsumexp<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    axis: usize,
    num_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    fn go<'py, T: Float + Element>(
        py: Python<'py>,
        a: &Bound<'py, PyArrayDyn<T>>,
        axis: usize,
        num_threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
        let xr = a.try_readonly()?;
        let shape = outer_shape(xr.shape(), axis)?;
        let n: usize = shape.iter().product();
        let xv = xr.as_array();
        let empty_axis = xr.shape().get(axis).is_some_and(|&l| l == 0);
        // An empty row's log-sum is −∞: filled directly, not by visiting every empty row.
        let mut v = filled_vec(n, if empty_axis { T::NEG_INFINITY } else { T::ZERO })?;
        guarded(py, || {
            if empty_axis {
                check_threads(num_threads)
            } else {
                softmax::logsumexp::<T>(&xv, axis, &mut v, num_threads)
            }
        })?;
        v.into_pyarray(py).reshape(IxDyn(&shape))
    }
    dispatch!(x, |a: T| go::<T>(py, a, axis, num_threads))
}

#[pyfunction]
#[pyo3(signature = (kind, y, grad, axis, param, num_threads=None))]
fn _sm_vjp<'py>(
    py: Python<'py>,
    kind: &str,
    y: &Bound<'py, PyAny>,
    grad: &Bound<'py, PyAny>,
    axis: usize,
    param: PyReadonlyArray1<'py, f64>,
    num_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let p = param.as_slice()?;
    let kind = kind.to_string();
    dispatch!(y, |a: T| map2_into(py, a, grad, |yv, gv, ov| {
        match kind.as_str() {
            "softmax" => softmax::softmax_vjp::<T>(yv, gv, axis, Params(p), ov, num_threads),
            "log_softmax" => {
                softmax::log_softmax_vjp::<T>(yv, gv, axis, Params(p), ov, num_threads)
            }
            "topk_softmax" => softmax::softmax_vjp::<T>(yv, gv, axis, Params::ONE, ov, num_threads),
            "sparsemax" => sparsemax::sparsemax_vjp::<T>(yv, gv, axis, ov, num_threads),
            "entmax15" => entmax::entmax15_vjp::<T>(yv, gv, axis, ov, num_threads),
            "taylor_softmax" => taylor_order(p)
                .and_then(|k| taylor::taylor_softmax_vjp::<T>(yv, gv, axis, k, ov, num_threads)),
            other => Err(crate::Error::invalid(format!("unknown map {other:?}"))),
        }
    }))
}

#[pyfunction]
#[pyo3(signature = (x, grad, axis, noise, n_points=None, num_threads=None))]
fn _sm_perturbmax_vjp<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    grad: &Bound<'py, PyAny>,
    axis: usize,
    noise: &str,
    n_points: Option<usize>,
    num_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let noise = Noise::parse(noise).map_err(super::to_pyerr)?;
    dispatch!(x, |a: T| map2_into(py, a, grad, |xv, gv, ov| {
        perturb::perturbmax_vjp::<T>(xv, gv, axis, noise, n_points, ov, num_threads)
    }))
}

#[pyfunction]
#[pyo3(signature = (x, grad, axis, num_threads=None))]
fn _sm_logsumexp_vjp<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    grad: PyReadonlyArray1<'py, f64>,
    axis: usize,
    num_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let g = grad.as_slice()?;
    dispatch!(x, |a: T| map_into(py, a, None, |xv, ov| {
        softmax::logsumexp_vjp::<T>(xv, g, axis, ov, num_threads)
    }))
}

#[pyfunction]
#[pyo3(signature = (y, grad, axis, alpha, num_threads=None))]
fn _sm_entmax_vjp<'py>(
    py: Python<'py>,
    y: &Bound<'py, PyAny>,
    grad: &Bound<'py, PyAny>,
    axis: usize,
    alpha: PyReadonlyArray1<'py, f64>,
    num_threads: Option<usize>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let al = alpha.as_slice()?;
    let n_rows: usize = outer_shape(y.cast::<numpy::PyUntypedArray>()?.shape(), axis)?
        .iter()
        .product();
    let mut ga = filled_vec(n_rows, 0.0f64)?;
    let gx = {
        let gref = &mut ga;
        dispatch!(y, |a: T| map2_into(py, a, grad, |yv, gv, ov| {
            entmax::entmax_vjp::<T>(yv, gv, axis, Params(al), ov, Some(gref), num_threads)
        }))?
    };
    Ok((gx, ga.into_pyarray(py).into_any()))
}

#[pyfunction]
#[pyo3(signature = (kind, x, axis, param, out=None, num_threads=None, noise="gaussian", n_points=None))]
#[allow(clippy::too_many_arguments)]
fn _sm_map<'py>(
    py: Python<'py>,
    kind: &str,
    x: &Bound<'py, PyAny>,
    axis: usize,
    param: PyReadonlyArray1<'py, f64>,
    out: Option<&Bound<'py, PyAny>>,
    num_threads: Option<usize>,
    noise: &str,
    n_points: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let p = param.as_slice()?;
    let noise = Noise::parse(noise).map_err(super::to_pyerr)?;
    let kind = kind.to_string();
    dispatch!(x, |a: T| map_into(py, a, out, |xv, ov| {
        match kind.as_str() {
            "sparsemax" => sparsemax::sparsemax::<T>(xv, axis, ov, num_threads),
            "entmax15" => entmax::entmax15::<T>(xv, axis, ov, num_threads),
            "entmax" => entmax::entmax::<T>(xv, axis, Params(p), ov, num_threads),
            "topk_softmax" => topk::topk_softmax::<T>(xv, axis, Params(p), ov, num_threads),
            "taylor_softmax" => taylor_order(p)
                .and_then(|k| taylor::taylor_softmax::<T>(xv, axis, k, ov, num_threads)),
            "perturbmax" => perturb::perturbmax::<T>(xv, axis, noise, n_points, ov, num_threads),
            other => Err(crate::Error::invalid(format!("unknown map {other:?}"))),
        }
    }))
}

#[pyfunction]
#[pyo3(signature = (x, axis, measure, p=2.0, q=1.0, order=2.0, num_threads=None))]
#[allow(clippy::too_many_arguments)]
fn _sm_sparsity<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    axis: usize,
    measure: &str,
    p: f64,
    q: f64,
    order: f64,
    num_threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let m = match measure {
        "mean_max" | "s0" => Measure::MeanMax,
        "l1_lp" => Measure::L1Lp { p },
        "hoyer" | "s_star" => Measure::Hoyer { q, p },
        "renyi" => Measure::Renyi { order },
        other => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "unknown sparsity measure {other:?}; expected 'mean_max', 'l1_lp', 's_star' or 'renyi'"
        )))
        }
    };
    fn go<'py, T: Float + Element>(
        py: Python<'py>,
        a: &Bound<'py, PyArrayDyn<T>>,
        axis: usize,
        m: Measure,
        num_threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
        let xr = a.try_readonly()?;
        let shape = outer_shape(xr.shape(), axis)?;
        let n: usize = shape.iter().product();
        let xv = xr.as_array();
        let empty_axis = xr.shape().get(axis).is_some_and(|&l| l == 0);
        // An empty row has no scale (NaN): filled directly, not by visiting every empty row.
        let mut v = filled_vec(n, if empty_axis { f64::NAN } else { 0.0 })?;
        guarded(py, || {
            if empty_axis {
                sparsity::check_measure(m)?;
                check_threads(num_threads)
            } else {
                sparsity::sparsity::<T>(&xv, axis, m, &mut v, num_threads)
            }
        })?;
        v.into_pyarray(py).reshape(IxDyn(&shape))
    }
    dispatch!(x, |a: T| go::<T>(py, a, axis, m, num_threads))
}

/// Returns `(per-row losses (f64, 1-d), number of rows not ignored, grad or None)`.
#[pyfunction]
#[pyo3(signature = (kind, x, target, axis, param, ignore_index, reduction, return_grad, num_threads=None, margin=0.0, scale=1.0, gamma=0.0, embeddings=None))]
#[allow(clippy::too_many_arguments)]
fn _sm_loss<'py>(
    py: Python<'py>,
    kind: &str,
    x: &Bound<'py, PyAny>,
    target: PyReadonlyArray1<'py, i64>,
    axis: usize,
    param: PyReadonlyArray1<'py, f64>,
    ignore_index: i64,
    reduction: &str,
    return_grad: bool,
    num_threads: Option<usize>,
    margin: f64,
    scale: f64,
    gamma: f64,
    embeddings: Option<numpy::PyReadonlyArray2<'py, f64>>,
) -> PyResult<(Bound<'py, PyAny>, usize, Option<Bound<'py, PyAny>>)> {
    let red = Reduction::parse(reduction).map_err(super::to_pyerr)?;
    let t = target.as_slice()?;
    let p = param.as_slice()?;
    let emb: Vec<f64>;
    let dim;
    let loss = match kind {
        "cross_entropy" => Loss::CrossEntropy,
        "margin" => Loss::Margin { margin, scale },
        "topk" => Loss::TopK { k: Params(p) },
        "sparsemax" => Loss::Sparsemax,
        "entmax" => Loss::Entmax { alpha: Params(p) },
        "tailr" => Loss::Tailr { gamma },
        "emo" => {
            let e = embeddings.ok_or_else(|| {
                pyo3::exceptions::PyValueError::new_err("emo_loss needs embeddings")
            })?;
            let ev = e.as_array();
            dim = ev.shape()[1];
            let flat: Vec<f64> = ev.iter().copied().collect();
            emb = losses::normalize_embeddings(&flat, dim).map_err(super::to_pyerr)?;
            Loss::Emo { emb: &emb, dim }
        }
        other => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "unknown loss {other:?}"
            )))
        }
    };
    fn go<'py, T: Float + Element>(
        py: Python<'py>,
        a: &Bound<'py, PyArrayDyn<T>>,
        t: &[i64],
        axis: usize,
        loss: Loss<'_>,
        ignore_index: i64,
        red: Reduction,
        return_grad: bool,
        num_threads: Option<usize>,
    ) -> PyResult<(Bound<'py, PyAny>, usize, Option<Bound<'py, PyAny>>)> {
        let xr = a.try_readonly()?;
        let n_rows: usize = outer_shape(xr.shape(), axis)?.iter().product();
        let xv = xr.as_array();
        let g = if return_grad {
            // Uninitialised: the loss kernel writes every row of the gradient (ignored rows
            // with 0).
            Some(new_array::<T>(py, xr.shape())?)
        } else {
            None
        };
        let mut gw = match &g {
            Some(g) => Some(g.try_readwrite()?),
            None => None,
        };
        let mut gv = gw.as_mut().map(|w| w.as_array_mut());
        let mut l = filled_vec(n_rows, 0.0f64)?;
        let c = guarded(py, || {
            losses::loss_rows::<T>(
                &xv,
                axis,
                t,
                loss,
                ignore_index,
                red,
                &mut l,
                gv.as_mut(),
                num_threads,
            )
        })?;
        drop(gv);
        drop(gw);
        Ok((l.into_pyarray(py).into_any(), c, g.map(|g| g.into_any())))
    }
    if let Ok(a) = x.cast::<PyArrayDyn<f32>>() {
        go::<f32>(
            py,
            a,
            t,
            axis,
            loss,
            ignore_index,
            red,
            return_grad,
            num_threads,
        )
    } else if let Ok(a) = x.cast::<PyArrayDyn<f64>>() {
        go::<f64>(
            py,
            a,
            t,
            axis,
            loss,
            ignore_index,
            red,
            return_grad,
            num_threads,
        )
    } else {
        Err(PyTypeError::new_err(
            "expected a float32 or float64 numpy array",
        ))
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_sm_softmax, m)?)?;
    m.add_function(wrap_pyfunction!(_sm_logsumexp, m)?)?;
    m.add_function(wrap_pyfunction!(_sm_vjp, m)?)?;
    m.add_function(wrap_pyfunction!(_sm_logsumexp_vjp, m)?)?;
    m.add_function(wrap_pyfunction!(_sm_perturbmax_vjp, m)?)?;
    m.add_function(wrap_pyfunction!(_sm_entmax_vjp, m)?)?;
    m.add_function(wrap_pyfunction!(_sm_map, m)?)?;
    m.add_function(wrap_pyfunction!(_sm_sparsity, m)?)?;
    m.add_function(wrap_pyfunction!(_sm_loss, m)?)?;
    m.add("_SM_ALPHA_MAX", entmax::ALPHA_MAX)?;
    m.add("_SM_MAX_ORDER", taylor::MAX_ORDER)?;
    m.add("_SM_MAX_POINTS", perturb::MAX_POINTS)?;
    m.add("_SM_MIN_POINTS", perturb::MIN_POINTS)?;
    m.add("_SM_MAX_THREADS", crate::parallel::MAX_THREADS)?;
    Ok(())
}
