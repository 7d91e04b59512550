//! Fourier-series densities ("Fourier Basis Density Model", De la Fuente, Singh, Ballé 2024).
//!
//! `p(x) = |Σ_k a_k e^{iπkx}|² / (2 Σ|a_k|²)` on `[-1, 1]` — non-negative by construction — or
//! on the real line through `x = tanh((y − offset)/scale)`. The modules:
//! - [`model`]: coefficients, autocorrelation `c_n`, normaliser, channels, domain;
//! - [`eval`]: `pdf` / `logpdf` / `cdf` by vectorised complex Horner (one `sincos` per point);
//! - [`bins`]: cancellation-free bin masses and quantised CDF tables for range coders;
//! - [`sample`]: inverse CDF (table start + safeguarded Newton) and `rvs`;
//! - [`fit`]: NLL with analytic gradients, penalties, L-BFGS and Adam.

// `!(v > 0.0)` style tests are deliberate throughout: they also reject NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod bins;
pub mod eval;
pub mod fit;
pub mod model;
pub mod sample;

pub use eval::Kind;
pub use model::{Channel, Domain, Model, C64};
