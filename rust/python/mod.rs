//! The only place that knows about Python. One file per engine; this file holds the shared
//! glue: error mapping, the GIL-releasing panic guard, and the foundation functions.

use numpy::{IntoPyArray, PyArray1};
use pyo3::create_exception;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::{catch_panic, Error};

mod fourier;
mod lattice;
mod pickle;
mod simplex;
mod spmio;
mod streams;
mod train;
use crate::{parallel, rng, simd};

create_exception!(
    probcraft._core,
    ModelFormatError,
    PyValueError,
    "A model file or serialized blob is corrupt, truncated or of a foreign format."
);
create_exception!(
    probcraft._core,
    LimitError,
    PyValueError,
    "An input exceeds a documented resource limit."
);

/// Maps a core error to the Python exception users see.
pub(crate) fn to_pyerr(e: Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::InvalidArgument(_) => PyValueError::new_err(msg),
        Error::WrongType(_) => PyTypeError::new_err(msg),
        Error::Format { .. } => ModelFormatError::new_err(msg),
        Error::Limit(_) => LimitError::new_err(msg),
        Error::Io(_) => PyOSError::new_err(msg),
        Error::Internal(_) => PyRuntimeError::new_err(msg),
    }
}

/// Runs a kernel with the GIL released, turning errors and panics into Python exceptions.
/// Every binding that does real work goes through here.
pub(crate) fn guarded<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> crate::Result<T> + Send,
) -> PyResult<T> {
    py.detach(|| catch_panic(f)).map_err(to_pyerr)
}

/// Version, build profile and the SIMD level in use.
#[pyfunction]
fn build_info(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("version", crate::VERSION)?;
    d.set_item("profile", crate::build_profile())?;
    d.set_item("simd", simd::level().name())?;
    d.set_item("simd_detected", simd::detected().name())?;
    let avail: Vec<&str> = simd::available().iter().map(|l| l.name()).collect();
    d.set_item("simd_available", avail)?;
    d.set_item("target_arch", std::env::consts::ARCH)?;
    d.set_item("default_threads", parallel::default_threads())?;
    // Whether batches read non-ASCII `str` items as code units (see `lattice::codeunits`).
    d.set_item("str_transcoder", crate::lattice::codeunits::fast())?;
    Ok(d)
}

/// Forces the SIMD level (capped at what the CPU supports); returns the level now in use.
#[pyfunction]
fn set_simd_level(level: &str) -> PyResult<&'static str> {
    let l = simd::Level::parse(level).ok_or_else(|| {
        PyValueError::new_err(format!(
            "unknown SIMD level {level:?}; expected one of 'scalar', 'avx2', 'avx512', 'neon'"
        ))
    })?;
    Ok(simd::set_level(l).name())
}

/// The first `n` 64-bit outputs of stream `(seed, stream)`.
#[pyfunction]
fn stream_u64(
    py: Python<'_>,
    seed: u64,
    stream: u64,
    n: usize,
) -> PyResult<Bound<'_, PyArray1<u64>>> {
    let v = guarded(py, || {
        if n > 1 << 28 {
            return Err(Error::Limit(format!("n={n} exceeds the limit of 2**28")));
        }
        let mut s = rng::Stream::new(seed, stream);
        Ok((0..n).map(|_| s.next_u64()).collect::<Vec<u64>>())
    })?;
    Ok(v.into_pyarray(py))
}

/// Child seed for nested streams, e.g. `derive_seed(seed, epoch)`.
#[pyfunction]
fn derive_seed(seed: u64, k: u64) -> u64 {
    rng::derive_seed(seed, k)
}

/// Test hook: sums `0..n_items` on the pool and returns the number of threads that ran.
#[pyfunction]
#[pyo3(signature = (n_items, num_threads=None))]
fn _parallel_probe(py: Python<'_>, n_items: usize, num_threads: Option<usize>) -> PyResult<usize> {
    guarded(py, || {
        parallel::run(num_threads, n_items, |par| {
            let total: u64 = parallel::map(par, n_items, |i| i as u64).into_iter().sum();
            debug_assert_eq!(
                total,
                (n_items as u64) * (n_items as u64).saturating_sub(1) / 2
            );
            // Outside a pool (the inline path) report 1; never touch rayon's global pool.
            rayon::current_thread_index().map_or(1, |_| rayon::current_num_threads())
        })
    })
}

/// Test hook: panics inside a guarded kernel; must surface as `RuntimeError`.
#[pyfunction]
fn _panic_for_test(py: Python<'_>) -> PyResult<()> {
    guarded(py, || -> crate::Result<()> {
        panic!("deliberate panic for testing")
    })
}

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    // rust-numpy resolves numpy's C API on the first array it touches and panics if that
    // fails; the resolution runs Python code (`numpy.lib.NumpyVersion`), so a Ctrl-C pending
    // after a long first call (a lattice call runs without the GIL before building its first
    // array) surfaced as a `PanicException`, which gets past `except Exception`, instead of
    // `KeyboardInterrupt`. Resolved here, fallibly: every later use is a cached lookup.
    numpy::get_array_module(py)?;
    m.add("__version__", crate::VERSION)?;
    m.add("ModelFormatError", py.get_type::<ModelFormatError>())?;
    m.add("LimitError", py.get_type::<LimitError>())?;
    m.add_class::<streams::Streams>()?;
    m.add_function(wrap_pyfunction!(build_info, m)?)?;
    m.add_function(wrap_pyfunction!(set_simd_level, m)?)?;
    m.add_function(wrap_pyfunction!(stream_u64, m)?)?;
    m.add_function(wrap_pyfunction!(derive_seed, m)?)?;
    m.add_function(wrap_pyfunction!(_parallel_probe, m)?)?;
    m.add_function(wrap_pyfunction!(_panic_for_test, m)?)?;
    lattice::register(m)?;
    spmio::register(m)?;
    fourier::register(m)?;
    train::register(m)?;
    simplex::register(m)?;
    Ok(())
}
