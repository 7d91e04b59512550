//! Fuzz targets for probcraft; the properties live in `checks.rs`, shared with the regression
//! replay in `tests/fuzz_regressions.rs`.
pub mod checks;
