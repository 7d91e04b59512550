//! `probcraft._core.FourierModel` and `fourier_fit`: thin wrappers over `crate::fourier`.
//! Shapes are normalised by the Python façade (`probcraft.fourier`); this layer takes
//! C-contiguous float64 / complex128 2-D arrays and reports anything else as a TypeError.

use numpy::{
    Complex64, IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyType};

use super::{guarded, pickle, to_pyerr};
use crate::codec::{Reader, Writer};
use crate::error::Error;
use crate::fourier::{bins, eval, fit, sample, Domain, Kind, Model, C64};

const MAGIC: &[u8; 4] = b"PCfd";

fn slice2<'a, T: numpy::Element>(a: &'a PyReadonlyArray2<'_, T>, what: &str) -> PyResult<&'a [T]> {
    a.as_slice().map_err(|_| {
        to_pyerr(Error::WrongType(format!(
            "{what} must be a C-contiguous array"
        )))
    })
}

fn slice1<'a, T: numpy::Element>(a: &'a PyReadonlyArray1<'_, T>, what: &str) -> PyResult<&'a [T]> {
    a.as_slice().map_err(|_| {
        to_pyerr(Error::WrongType(format!(
            "{what} must be a contiguous array"
        )))
    })
}

fn to_2d<'py, T: numpy::Element>(
    py: Python<'py>,
    v: Vec<T>,
    rows: usize,
    cols: usize,
) -> PyResult<Bound<'py, PyArray2<T>>> {
    v.into_pyarray(py).reshape([rows, cols])
}

fn penalty(kind: &str, gamma: f64) -> crate::Result<Option<fit::Penalty>> {
    let kind = fit::PenaltyKind::parse(kind)?;
    let p = fit::Penalty::new(kind, gamma)?;
    Ok(if gamma > 0.0 { Some(p) } else { None })
}

/// A batch of Fourier-series densities (one per channel). Use `probcraft.FourierDensity`.
#[pyclass(frozen, module = "probcraft._core")]
pub struct FourierModel {
    model: Model,
}

impl FourierModel {
    fn state(&self) -> Vec<u8> {
        let m = &self.model;
        let mut w = Writer::new(MAGIC, 1);
        w.str(m.domain.name());
        w.u64(m.n_channels() as u64);
        w.u64(m.degree() as u64 + 1);
        for ch in &m.channels {
            w.f64(ch.scale);
            w.f64(ch.offset);
            for c in &ch.coeffs {
                w.f64(c.re);
                w.f64(c.im);
            }
        }
        w.finish()
    }
}

#[pymethods]
impl FourierModel {
    #[new]
    fn new(
        py: Python<'_>,
        coeffs: PyReadonlyArray2<'_, Complex64>,
        domain: &str,
        scale: PyReadonlyArray1<'_, f64>,
        offset: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<Self> {
        let shape = coeffs.shape().to_vec();
        let cs: Vec<C64> = slice2(&coeffs, "coeffs")?
            .iter()
            .map(|c| C64::new(c.re, c.im))
            .collect();
        let sc = slice1(&scale, "scale")?.to_vec();
        let off = slice1(&offset, "offset")?.to_vec();
        let model = guarded(py, || {
            let d = Domain::parse(domain)?;
            Model::new(d, shape[0], &cs, &sc, &off)
        })?;
        Ok(FourierModel { model })
    }

    #[getter]
    fn domain(&self) -> &'static str {
        self.model.domain.name()
    }

    #[getter]
    fn n_channels(&self) -> usize {
        self.model.n_channels()
    }

    #[getter]
    fn degree(&self) -> usize {
        self.model.degree()
    }

    #[getter]
    fn coeffs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<Complex64>>> {
        let v: Vec<Complex64> = self
            .model
            .channels
            .iter()
            .flat_map(|ch| ch.coeffs.iter().map(|c| Complex64::new(c.re, c.im)))
            .collect();
        to_2d(py, v, self.model.n_channels(), self.model.degree() + 1)
    }

    #[getter]
    fn scale<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        let v: Vec<f64> = self.model.channels.iter().map(|c| c.scale).collect();
        v.into_pyarray(py)
    }

    #[getter]
    fn offset<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        let v: Vec<f64> = self.model.channels.iter().map(|c| c.offset).collect();
        v.into_pyarray(py)
    }

    /// The autocorrelation `c_n / c_0`, shape `(C, N+1)`.
    #[getter]
    fn autocorrelation<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<Complex64>>> {
        let v: Vec<Complex64> = self
            .model
            .channels
            .iter()
            .flat_map(|ch| ch.c.iter().map(|c| Complex64::new(c.re, c.im)))
            .collect();
        to_2d(py, v, self.model.n_channels(), self.model.degree() + 1)
    }

    /// `kind` in {"pdf", "logpdf", "cdf"} at points `(1 or C, M)`; returns `(C, M)`.
    #[pyo3(signature = (kind, x, num_threads=None))]
    fn evaluate<'py>(
        &self,
        py: Python<'py>,
        kind: &str,
        x: PyReadonlyArray2<'_, f64>,
        num_threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let (rows, m) = (x.shape()[0], x.shape()[1]);
        let xs = slice2(&x, "x")?;
        let model = &self.model;
        let out = guarded(py, || {
            let k = match kind {
                "pdf" => Kind::Pdf,
                "logpdf" => Kind::LogPdf,
                "cdf" => Kind::Cdf,
                _ => return Err(Error::invalid(format!("unknown evaluation {kind:?}"))),
            };
            eval::evaluate(model, k, xs, rows, m, num_threads)
        })?;
        to_2d(py, out, model.n_channels(), m)
    }

    /// Probability of `[lower, upper]`, product form; inputs `(1 or C, M)`.
    #[pyo3(signature = (lower, upper, num_threads=None))]
    fn bin_mass<'py>(
        &self,
        py: Python<'py>,
        lower: PyReadonlyArray2<'_, f64>,
        upper: PyReadonlyArray2<'_, f64>,
        num_threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        if lower.shape() != upper.shape() {
            return Err(to_pyerr(Error::invalid("lower and upper shapes differ")));
        }
        let (rows, m) = (lower.shape()[0], lower.shape()[1]);
        let (l, u) = (slice2(&lower, "lower")?, slice2(&upper, "upper")?);
        let model = &self.model;
        let out = guarded(py, || bins::bin_mass(model, l, u, rows, m, num_threads))?;
        to_2d(py, out, model.n_channels(), m)
    }

    /// Inverse CDF at quantiles `(1 or C, M)`.
    #[pyo3(signature = (q, num_threads=None))]
    fn ppf<'py>(
        &self,
        py: Python<'py>,
        q: PyReadonlyArray2<'_, f64>,
        num_threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let (rows, m) = (q.shape()[0], q.shape()[1]);
        let qs = slice2(&q, "q")?;
        let model = &self.model;
        let out = guarded(py, || sample::ppf(model, qs, rows, m, num_threads))?;
        to_2d(py, out, model.n_channels(), m)
    }

    /// `size` samples per channel, `(C, size)`.
    #[pyo3(signature = (size, seed, num_threads=None))]
    fn rvs<'py>(
        &self,
        py: Python<'py>,
        size: usize,
        seed: u64,
        num_threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let model = &self.model;
        let out = guarded(py, || sample::rvs(model, size, seed, num_threads))?;
        to_2d(py, out, model.n_channels(), size)
    }

    /// `(cdf (C, L) int32, lengths (C,) int32, offsets (C,) int32, has_overflow)`.
    #[pyo3(signature = (precision, tail_mass, num_bins))]
    #[allow(clippy::type_complexity)]
    fn quantized_cdf<'py>(
        &self,
        py: Python<'py>,
        precision: u32,
        tail_mass: f64,
        num_bins: usize,
    ) -> PyResult<(
        Bound<'py, PyArray2<i32>>,
        Bound<'py, PyArray1<i32>>,
        Bound<'py, PyArray1<i32>>,
        bool,
    )> {
        let model = &self.model;
        let q = guarded(py, || {
            bins::quantized_cdf(model, precision, tail_mass, num_bins)
        })?;
        let c = model.n_channels();
        Ok((
            to_2d(py, q.cdf, c, q.width)?,
            q.lengths.into_pyarray(py),
            q.offsets.into_pyarray(py),
            q.has_overflow,
        ))
    }

    /// Mean NLL per channel and (if `grad`) gradients w.r.t. coefficients, scale, offset.
    #[pyo3(signature = (x, weights, penalty_kind, gamma, grad, num_threads=None))]
    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn nll_grad<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'_, f64>,
        weights: Option<PyReadonlyArray2<'_, f64>>,
        penalty_kind: &str,
        gamma: f64,
        grad: bool,
        num_threads: Option<usize>,
    ) -> PyResult<(
        Bound<'py, PyArray1<f64>>,
        Bound<'py, PyArray2<Complex64>>,
        Bound<'py, PyArray1<f64>>,
        Bound<'py, PyArray1<f64>>,
    )> {
        let (rows, m) = (x.shape()[0], x.shape()[1]);
        if let Some(w) = &weights {
            if w.shape() != x.shape() {
                return Err(to_pyerr(Error::invalid(format!(
                    "weights shape {:?} differs from the points' {:?}",
                    w.shape(),
                    x.shape()
                ))));
            }
        }
        let xs = slice2(&x, "x")?;
        let ws = match &weights {
            Some(w) => Some(slice2(w, "weights")?),
            None => None,
        };
        let model = &self.model;
        let res = guarded(py, || {
            let pen = penalty(penalty_kind, gamma)?;
            fit::nll_grad_model(model, xs, ws, rows, m, pen, grad, num_threads)
        })?;
        let c = model.n_channels();
        let n1 = if grad { model.degree() + 1 } else { 0 };
        let nll: Vec<f64> = res.iter().map(|r| r.nll).collect();
        let ga: Vec<Complex64> = res
            .iter()
            .flat_map(|r| r.grad_a.iter().map(|g| Complex64::new(g.re, g.im)))
            .collect();
        let gs: Vec<f64> = res.iter().map(|r| r.grad_scale).collect();
        let gt: Vec<f64> = res.iter().map(|r| r.grad_offset).collect();
        Ok((
            nll.into_pyarray(py),
            to_2d(py, ga, c, n1)?,
            gs.into_pyarray(py),
            gt.into_pyarray(py),
        ))
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
        pickle::reduce(slf.as_any(), &slf.get().state())
    }

    #[classmethod]
    fn _from_state(_cls: &Bound<'_, PyType>, state: &[u8]) -> PyResult<FourierModel> {
        let parse = || -> crate::Result<FourierModel> {
            let (mut r, version) = Reader::new(state, MAGIC, "FourierModel pickle")?;
            if version != 1 {
                return Err(r.err(format!("unsupported version {version}")));
            }
            let domain = Domain::parse(r.str()?).map_err(|e| r.err(e.to_string()))?;
            let c = r.count(8)?;
            let n1 = r.count(16)?;
            let mut coeffs = Vec::new();
            let mut scale = Vec::new();
            let mut offset = Vec::new();
            for _ in 0..c {
                scale.push(r.f64()?);
                offset.push(r.f64()?);
                for _ in 0..n1 {
                    let re = r.f64()?;
                    let im = r.f64()?;
                    coeffs.push(C64::new(re, im));
                }
            }
            r.finish()?;
            let model = Model::new(domain, c, &coeffs, &scale, &offset)
                .map_err(|e| Error::format("FourierModel pickle", None, e.to_string()))?;
            Ok(FourierModel { model })
        };
        parse().map_err(to_pyerr)
    }
}

/// Maximum-likelihood fit of `rows` channels; returns
/// `(coeffs (C, n) complex, scale (C,), offset (C,), nll (C,), iterations (C,))`.
#[pyfunction]
#[pyo3(signature = (data, weights, n_coeffs, domain, penalty_kind, gamma, optimizer, steps, lr,
                    batch_size, seed, compress, tol, num_threads=None))]
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn fourier_fit<'py>(
    py: Python<'py>,
    data: PyReadonlyArray2<'_, f64>,
    weights: Option<PyReadonlyArray2<'_, f64>>,
    n_coeffs: usize,
    domain: &str,
    penalty_kind: &str,
    gamma: f64,
    optimizer: &str,
    steps: usize,
    lr: f64,
    batch_size: Option<usize>,
    seed: u64,
    compress: bool,
    tol: f64,
    num_threads: Option<usize>,
) -> PyResult<(
    Bound<'py, PyArray2<Complex64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<u64>>,
)> {
    let (rows, m) = (data.shape()[0], data.shape()[1]);
    if let Some(w) = &weights {
        if w.shape() != data.shape() {
            return Err(to_pyerr(Error::invalid(format!(
                "weights shape {:?} differs from the data's {:?}",
                w.shape(),
                data.shape()
            ))));
        }
    }
    let ys = slice2(&data, "data")?;
    let ws = match &weights {
        Some(w) => Some(slice2(w, "weights")?),
        None => None,
    };
    let res = guarded(py, || {
        let opts = fit::FitOptions {
            n_coeffs,
            domain: Domain::parse(domain)?,
            penalty: penalty(penalty_kind, gamma)?,
            optimizer: fit::Optimizer::parse(optimizer)?,
            steps,
            lr,
            batch_size,
            seed,
            compress,
            tol,
        };
        if !(tol.is_finite() && tol >= 0.0) {
            return Err(Error::invalid(format!("tol must be >= 0, got {tol}")));
        }
        fit::fit(ys, ws, rows, m, &opts, num_threads)
    })?;
    let coeffs: Vec<Complex64> = res
        .iter()
        .flat_map(|r| r.coeffs.iter().map(|c| Complex64::new(c.re, c.im)))
        .collect();
    Ok((
        to_2d(py, coeffs, rows, n_coeffs)?,
        res.iter()
            .map(|r| r.scale)
            .collect::<Vec<_>>()
            .into_pyarray(py),
        res.iter()
            .map(|r| r.offset)
            .collect::<Vec<_>>()
            .into_pyarray(py),
        res.iter()
            .map(|r| r.nll)
            .collect::<Vec<_>>()
            .into_pyarray(py),
        res.iter()
            .map(|r| r.iterations as u64)
            .collect::<Vec<_>>()
            .into_pyarray(py),
    ))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<FourierModel>()?;
    m.add_function(wrap_pyfunction!(fourier_fit, m)?)?;
    Ok(())
}
