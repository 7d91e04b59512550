//! The softmax family: maps from ℝⁿ to the probability simplex, their vector–Jacobian products
//! and their losses (see `shared/spec/softmax.md`).
//!
//! Every map works row by row along one axis of an n-d array ([`layout`]); rows are split
//! across the pool only when the array is large enough to pay for it. Within a row, the hot
//! loops (max, exp-and-sum, scale, dot products) dispatch on [`crate::simd::level`] to AVX2+FMA
//! kernels or to portable scalar code ([`exp`], [`kern`]).
//!
//! Internals that are not memory-bound (thresholds of sparsemax/entmax, quadrature of
//! perturb-max) run in f64 whatever the element type, so float32 results are rounded once at
//! the end rather than accumulating float32 error through a root finder.

pub mod entmax;
pub mod exp;
pub mod kern;
pub mod layout;
pub mod losses;
pub mod perturb;
pub mod softmax;
pub mod sparsekern;
pub mod sparsemax;
pub mod sparsity;
pub mod taylor;
pub mod topk;

use std::fmt::Debug;
use std::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

pub use layout::{Params, RowSpec};

/// The element types the kernels accept: `f32` and `f64`.
pub trait Float:
    Copy
    + Send
    + Sync
    + PartialOrd
    + Debug
    + Default
    + 'static
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
{
    const ZERO: Self;
    const ONE: Self;
    const INFINITY: Self;
    const NEG_INFINITY: Self;
    const NAN: Self;
    /// Machine epsilon, as f64.
    const EPSILON: f64;
    /// Elements per block of the blocked softmax (a block stays in L1 between its passes).
    const BLOCK: usize;
    /// `"float32"` / `"float64"`, for messages.
    const NAME: &'static str;

    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn is_nan(self) -> bool;
    fn abs(self) -> Self;
    fn exp(self) -> Self;
    fn ln(self) -> Self;
    fn maxf(self, o: Self) -> Self;

    /// Largest element (−∞ for an empty slice). A NaN may or may not be returned when one is
    /// present: callers detect NaN through the sums that follow.
    fn k_max(x: &[Self]) -> Self;
    /// `out[i] = exp((x[i] − m)·c)`, returning the sum in f64. Requires `x[i] ≤ m` or NaN
    /// and `c > 0` (arguments of the exponential are ≤ 0).
    fn k_exp_store_sum(x: &[Self], m: Self, c: Self, out: &mut [Self]) -> f64;
    /// `Σ exp((x[i] − m)·c)` in f64, same preconditions.
    fn k_exp_sum(x: &[Self], m: Self, c: Self) -> f64;
}

macro_rules! float_impl {
    ($t:ty, $block:expr, $name:expr, $max:path, $ess:path, $es:path) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const INFINITY: Self = <$t>::INFINITY;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            const NAN: Self = <$t>::NAN;
            const EPSILON: f64 = <$t>::EPSILON as f64;
            const BLOCK: usize = $block;
            const NAME: &'static str = $name;
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn maxf(self, o: Self) -> Self {
                <$t>::max(self, o)
            }
            #[inline]
            fn k_max(x: &[Self]) -> Self {
                $max(x)
            }
            #[inline]
            fn k_exp_store_sum(x: &[Self], m: Self, c: Self, out: &mut [Self]) -> f64 {
                $ess(x, m, c, out)
            }
            #[inline]
            fn k_exp_sum(x: &[Self], m: Self, c: Self) -> f64 {
                $es(x, m, c)
            }
        }
    };
}

float_impl!(
    f32,
    2048,
    "float32",
    exp::max_f32,
    exp::exp_store_sum_f32,
    exp::exp_sum_f32
);
float_impl!(
    f64,
    1024,
    "float64",
    exp::max_f64,
    exp::exp_store_sum_f64,
    exp::exp_sum_f64
);
