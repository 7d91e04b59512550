//! Simple element-wise loops and reductions, written once as plain Rust and compiled three times:
//! for the baseline target and (on x86-64) with AVX2+FMA and with AVX-512F enabled, where LLVM
//! vectorises them (16 float32 lanes under AVX-512).
//! Reductions keep 8 independent f64 accumulators so that the compiler may vectorise them
//! (a single running sum is a serial dependency it must not reorder).

use super::Float;
use crate::simd::{level, Level};

/// `x` as a slice of `U` when `T` is `U` (the element types are only f32 and f64).
#[inline(always)]
pub(crate) fn cast<T: Float, U: Float>(x: &[T]) -> Option<&[U]> {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<U>() {
        // SAFETY: T and U are the same type.
        Some(unsafe { std::slice::from_raw_parts(x.as_ptr() as *const U, x.len()) })
    } else {
        None
    }
}

#[inline(always)]
pub(crate) fn cast_mut<T: Float, U: Float>(x: &mut [T]) -> Option<&mut [U]> {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<U>() {
        // SAFETY: T and U are the same type.
        Some(unsafe { std::slice::from_raw_parts_mut(x.as_mut_ptr() as *mut U, x.len()) })
    } else {
        None
    }
}

macro_rules! multiversion {
    ($(#[$doc:meta])* pub fn $name:ident<T: Float>($($arg:ident : $ty:ty),*) -> $ret:ty $body:block) => {
        $(#[$doc])*
        #[inline]
        pub fn $name<T: Float>($($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn body<T: Float>($($arg: $ty),*) -> $ret $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2<T: Float>($($arg: $ty),*) -> $ret {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512<T: Float>($($arg: $ty),*) -> $ret {
                    body($($arg),*)
                }
                match level() {
                    // SAFETY: the level is only Avx512 when the CPU has AVX-512F, AVX2 and FMA.
                    Level::Avx512 => return unsafe { avx512($($arg),*) },
                    // SAFETY: the level is only Avx2 when the CPU has AVX2 and FMA.
                    Level::Avx2 => return unsafe { avx2($($arg),*) },
                    _ => {}
                }
            }
            body($($arg),*)
        }
    };
}

multiversion! {
    /// `Σ a[i]·b[i]` in f64.
    pub fn dot<T: Float>(a: &[T], b: &[T]) -> f64 {
        let n = a.len().min(b.len());
        let (a, b) = (&a[..n], &b[..n]);
        let mut acc = [0f64; 8];
        let mut ca = a.chunks_exact(8);
        let mut cb = b.chunks_exact(8);
        for (x, y) in (&mut ca).zip(&mut cb) {
            for k in 0..8 {
                acc[k] += x[k].to_f64() * y[k].to_f64();
            }
        }
        let mut s: f64 = acc.iter().sum();
        for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
            s += x.to_f64() * y.to_f64();
        }
        s
    }
}

multiversion! {
    /// `Σ a[i]` in f64.
    pub fn sum<T: Float>(a: &[T]) -> f64 {
        let mut acc = [0f64; 8];
        let mut ca = a.chunks_exact(8);
        for x in &mut ca {
            for k in 0..8 {
                acc[k] += x[k].to_f64();
            }
        }
        let mut s: f64 = acc.iter().sum();
        for x in ca.remainder() {
            s += x.to_f64();
        }
        s
    }
}

multiversion! {
    /// `out[i] *= f`.
    pub fn scale<T: Float>(out: &mut [T], f: T) -> () {
        for v in out.iter_mut() {
            *v *= f;
        }
    }
}

multiversion! {
    /// `out[i] = (x[i] − m)·c − b` (log-softmax's second pass).
    pub fn affine<T: Float>(x: &[T], m: T, c: T, b: T, out: &mut [T]) -> () {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = (v - m) * c - b;
        }
    }
}

multiversion! {
    /// `out[i] = c·y[i]·(g[i] − d)` (softmax's VJP).
    pub fn softmax_vjp<T: Float>(y: &[T], g: &[T], d: T, c: T, out: &mut [T]) -> () {
        for ((o, &p), &h) in out.iter_mut().zip(y).zip(g) {
            *o = c * p * (h - d);
        }
    }
}

multiversion! {
    /// `out[i] = c·(g[i] − exp(z[i])·s)` (log-softmax's VJP from its output `z`).
    pub fn log_softmax_vjp<T: Float>(z: &[T], g: &[T], s: T, c: T, out: &mut [T]) -> () {
        for ((o, &l), &h) in out.iter_mut().zip(z).zip(g) {
            *o = c * (h - l.exp() * s);
        }
    }
}

multiversion! {
    /// `out[i] = max((x[i] − m) − t, 0)` (sparsemax's output given its threshold `m + t`;
    /// subtracting the maximum first keeps `x − τ` exact when |x| is huge).
    pub fn relu_shift<T: Float>(x: &[T], m: f64, t: f64, out: &mut [T]) -> () {
        for (o, &v) in out.iter_mut().zip(x) {
            let d = (v.to_f64() - m) - t;
            *o = T::from_f64(if d > 0.0 { d } else { 0.0 });
        }
    }
}

multiversion! {
    /// `out[i] = max((x[i] − m)·a − t, 0)²` (entmax-1.5's output given its threshold).
    pub fn relu_sq_shift<T: Float>(x: &[T], m: f64, a: f64, t: f64, out: &mut [T]) -> () {
        for (o, &v) in out.iter_mut().zip(x) {
            let d = (v.to_f64() - m) * a - t;
            *o = T::from_f64(if d > 0.0 { d * d } else { 0.0 });
        }
    }
}

#[inline(always)]
fn pos_moments_body(z: &[f64], t: f64) -> (f64, f64, f64) {
    let (mut k, mut s1, mut s2) = ([0f64; 4], [0f64; 4], [0f64; 4]);
    let mut ch = z.chunks_exact(4);
    for c in &mut ch {
        for j in 0..4 {
            let d = c[j] - t;
            let p = if d > 0.0 { d } else { 0.0 };
            k[j] += if d > 0.0 { 1.0 } else { 0.0 };
            s1[j] += p;
            s2[j] += p * p;
        }
    }
    let (mut kk, mut a, mut b) = (
        k.iter().sum::<f64>(),
        s1.iter().sum::<f64>(),
        s2.iter().sum::<f64>(),
    );
    for &v in ch.remainder() {
        let d = v - t;
        if d > 0.0 {
            kk += 1.0;
            a += d;
            b += d * d;
        }
    }
    (kk, a, b)
}

/// `(#{z > t}, Σ (z − t)₊, Σ (z − t)₊²)`, branch-free so that it vectorises.
pub fn pos_moments(z: &[f64], t: f64) -> (f64, f64, f64) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(z: &[f64], t: f64) -> (f64, f64, f64) {
            pos_moments_body(z, t)
        }
        if matches!(level(), Level::Avx2 | Level::Avx512) {
            // SAFETY: the SIMD level is only Avx2/Avx512 when the CPU has AVX2 and FMA.
            return unsafe { avx2(z, t) };
        }
    }
    pos_moments_body(z, t)
}

/// Index of the first NaN, if any.
pub fn find_nan<T: Float>(x: &[T]) -> Option<usize> {
    // An early-exit `position` is a serial compare-and-branch per element; OR-ing the
    // comparisons over a chunk vectorises, and only a chunk holding a NaN is searched.
    for (ci, c) in x.chunks(64).enumerate() {
        if c.iter().fold(false, |a, v| a | v.is_nan()) {
            return c.iter().position(|v| v.is_nan()).map(|j| ci * 64 + j);
        }
    }
    None
}

/// Whether `x` holds a NaN (one vectorised pass, no early exit).
pub fn has_nan<T: Float>(x: &[T]) -> bool {
    x.iter().fold(false, |a, v| a | v.is_nan())
}

/// Whether some element of `x` is `>= t` (or, with `strict`, `> t`), branch-free so that it
/// vectorises. A float `max` fold cannot: its compare-and-select chain is not reassociable.
#[inline(always)]
pub fn any_at_least<T: Float>(x: &[T], t: T, strict: bool) -> bool {
    if strict {
        x.iter().fold(false, |a, &v| a | (v > t))
    } else {
        x.iter().fold(false, |a, &v| a | (v >= t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reductions() {
        let a: Vec<f32> = (0..37).map(|i| i as f32).collect();
        let b: Vec<f32> = (0..37).map(|i| 1.0 - i as f32 * 0.5).collect();
        let d: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (*x as f64) * (*y as f64))
            .sum();
        assert_eq!(dot(&a, &b), d);
        assert_eq!(sum(&a), 666.0);
        let mut o = a.clone();
        scale(&mut o, 2.0);
        assert_eq!(o[36], 72.0);
        assert_eq!(find_nan(&[1.0f64, f64::NAN]), Some(1));
        let mut long = vec![0f32; 300];
        assert_eq!(find_nan(&long), None);
        long[131] = f32::NAN;
        long[250] = f32::NAN;
        assert_eq!(find_nan(&long), Some(131));
        assert!(any_at_least(&a, 36.0, false));
        assert!(!any_at_least(&a, 36.0, true));
    }
}
