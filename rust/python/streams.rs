//! `probcraft.Streams`: a picklable handle on the per-item random streams.

use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyType};

use super::{guarded, pickle, to_pyerr};
use crate::codec::{Reader, Writer};
use crate::error::Error;
use crate::rng;

const MAGIC: &[u8; 4] = b"PCst";
const MAX_DRAWS: usize = 1 << 28;

/// Reproducible per-item random streams: item `i` draws from stream `(seed, i)`.
///
/// `Streams(seed).child(epoch)` derives an independent family, e.g. one per epoch.
#[pyclass(frozen, module = "probcraft._core")]
pub struct Streams {
    seed: u64,
}

impl Streams {
    fn state(&self) -> Vec<u8> {
        let mut w = Writer::new(MAGIC, 1);
        w.u64(self.seed);
        w.finish()
    }
}

fn check_n(n: usize) -> crate::Result<()> {
    if n > MAX_DRAWS {
        return Err(Error::Limit(format!(
            "n={n} exceeds the limit of 2**28 draws"
        )));
    }
    Ok(())
}

#[pymethods]
impl Streams {
    #[new]
    fn new(seed: u64) -> Self {
        Streams { seed }
    }

    #[getter]
    fn seed(&self) -> u64 {
        self.seed
    }

    /// The family for `derive_seed(seed, k)`.
    fn child(&self, k: u64) -> Streams {
        Streams {
            seed: rng::derive_seed(self.seed, k),
        }
    }

    /// The first `n` raw 64-bit outputs of stream `i`.
    fn u64<'py>(&self, py: Python<'py>, i: u64, n: usize) -> PyResult<Bound<'py, PyArray1<u64>>> {
        let seed = self.seed;
        let v = guarded(py, || {
            check_n(n)?;
            let mut s = rng::Stream::new(seed, i);
            Ok((0..n).map(|_| s.next_u64()).collect::<Vec<_>>())
        })?;
        Ok(v.into_pyarray(py))
    }

    /// `n` uniforms in `[0, 1)` from stream `i`.
    fn uniform<'py>(
        &self,
        py: Python<'py>,
        i: u64,
        n: usize,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let seed = self.seed;
        let v = guarded(py, || {
            check_n(n)?;
            let mut s = rng::Stream::new(seed, i);
            Ok((0..n).map(|_| s.next_f64()).collect::<Vec<_>>())
        })?;
        Ok(v.into_pyarray(py))
    }

    fn __repr__(&self) -> String {
        format!("Streams(seed={})", self.seed)
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Streams>()
            .map(|o| o.get().seed == self.seed)
            .unwrap_or(false)
    }

    fn __hash__(&self) -> u64 {
        rng::mix64(self.seed)
    }

    fn __reduce__<'py>(
        slf: &Bound<'py, Self>,
    ) -> PyResult<(Bound<'py, PyAny>, (Bound<'py, PyBytes>,))> {
        pickle::reduce(slf.as_any(), &slf.get().state())
    }

    #[classmethod]
    fn _from_state(_cls: &Bound<'_, PyType>, state: &[u8]) -> PyResult<Streams> {
        let parse = || -> crate::Result<Streams> {
            let (mut r, version) = Reader::new(state, MAGIC, "Streams pickle")?;
            if version != 1 {
                return Err(r.err(format!("unsupported version {version}")));
            }
            let seed = r.u64()?;
            r.finish()?;
            Ok(Streams { seed })
        };
        parse().map_err(to_pyerr)
    }
}
