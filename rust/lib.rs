//! probcraft: exact, fast probability distributions.
//!
//! The core is plain Rust (no Python) so that `cargo test` and `cargo bench` run without an
//! interpreter. Everything Python-specific lives in [`python`] behind the `python` feature.
//!
//! Shared plumbing every engine uses:
//! - [`error`]: one error type, mapped to Python exceptions in one place;
//! - [`rng`]: per-item random streams `(seed, i) -> generator`, value-stable forever;
//! - [`parallel`]: the thread-pool policy (lazy pools, fork safety, serial single items);
//! - [`simd`]: run-time SIMD level detection with a forced-scalar override;
//! - [`codec`]: deterministic little-endian byte encoding for pickling and model files.

pub mod codec;
pub mod error;
pub mod fourier;
pub mod lattice;
pub mod parallel;
pub mod rng;
pub mod simd;
pub mod simplex;
pub mod train;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, Result};

/// Crate version, as reported by `probcraft.build_info()`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `"release"` or `"debug"`, as reported by `probcraft.build_info()`.
pub fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}
