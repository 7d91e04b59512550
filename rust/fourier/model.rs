//! Coefficients, the autocorrelation `c_n`, the normaliser, channels and the domain.
//!
//! A channel stores its coefficients in the forms the kernels want, computed once:
//! `a / sqrt(2 c_0)` so that `p(x) = |g(z)|²` needs no division per point, `c_n / c_0` for bin
//! masses and the penalty, and `b_n = c_n / (iπn c_0)` for the CDF.

use std::f64::consts::PI;

use crate::error::{Error, Result};

/// Largest degree accepted. Horner's error grows ~linearly in N and the O(N²) autocorrelation
/// stays cheap up to here; larger models are almost certainly a caller bug.
pub const MAX_DEGREE: usize = 4096;

/// Minimal complex number (the crate has no complex dependency outside the Python feature).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct C64 {
    pub re: f64,
    pub im: f64,
}

// Plain methods rather than operator traits keep call sites explicit in the kernels.
#[allow(clippy::should_implement_trait)]
impl C64 {
    #[inline(always)]
    pub const fn new(re: f64, im: f64) -> Self {
        C64 { re, im }
    }
    #[inline(always)]
    pub fn mul(self, o: C64) -> C64 {
        C64::new(
            self.re * o.re - self.im * o.im,
            self.re * o.im + self.im * o.re,
        )
    }
    #[inline(always)]
    pub fn add(self, o: C64) -> C64 {
        C64::new(self.re + o.re, self.im + o.im)
    }
    #[inline(always)]
    pub fn sub(self, o: C64) -> C64 {
        C64::new(self.re - o.re, self.im - o.im)
    }
    #[inline(always)]
    pub fn scale(self, s: f64) -> C64 {
        C64::new(self.re * s, self.im * s)
    }
    #[inline(always)]
    pub fn conj(self) -> C64 {
        C64::new(self.re, -self.im)
    }
    #[inline(always)]
    pub fn norm_sqr(self) -> f64 {
        self.re * self.re + self.im * self.im
    }
    /// `e^{iθ}`.
    #[inline(always)]
    pub fn cis(theta: f64) -> C64 {
        let (s, c) = theta.sin_cos();
        C64::new(c, s)
    }
}

/// Where the density lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// `[-1, 1]`, periodic model.
    Interval,
    /// The real line through `x = tanh((y - offset) / scale)`.
    Real,
}

impl Domain {
    pub fn parse(s: &str) -> Result<Domain> {
        match s {
            "interval" => Ok(Domain::Interval),
            "real" => Ok(Domain::Real),
            _ => Err(Error::invalid(format!(
                "domain must be 'interval' or 'real', got {s:?}"
            ))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Domain::Interval => "interval",
            Domain::Real => "real",
        }
    }
}

/// One channel's density, precomputed for evaluation.
#[derive(Clone, Debug)]
pub struct Channel {
    /// The caller's coefficients, kept verbatim (pickling, `coeffs` property).
    pub coeffs: Vec<C64>,
    /// `a_k / sqrt(2 c_0)`: `p(x) = |Σ a_k z^k|²` with `z = e^{iπx}`.
    pub a: Vec<C64>,
    /// `c_n / c_0` for `n = 0..=N` (`c[0] = 1`).
    pub c: Vec<C64>,
    /// `b_n = c_n / (iπ n c_0)` for `n = 1..=N`, stored at index `n - 1`.
    pub b: Vec<C64>,
    /// `Re Σ b_n (-1)^n`, the CDF's constant so that `P(-1) = 0`.
    pub b_at_minus1: f64,
    pub scale: f64,
    pub offset: f64,
}

impl Channel {
    /// Validates and precomputes. `which` names the channel in error messages.
    pub fn new(coeffs: Vec<C64>, scale: f64, offset: f64, which: usize) -> Result<Channel> {
        if coeffs.is_empty() {
            return Err(Error::invalid("coefficients must have at least one entry"));
        }
        if coeffs.len() > MAX_DEGREE + 1 {
            return Err(Error::Limit(format!(
                "{} coefficients exceed the limit of {}",
                coeffs.len(),
                MAX_DEGREE + 1
            )));
        }
        if let Some(k) = coeffs
            .iter()
            .position(|c| !c.re.is_finite() || !c.im.is_finite())
        {
            return Err(Error::invalid(format!(
                "coefficient {k} of channel {which} is not finite"
            )));
        }
        if !(scale.is_finite() && scale > 0.0) {
            return Err(Error::invalid(format!(
                "scale of channel {which} must be finite and > 0, got {scale}"
            )));
        }
        // The kernels map `y` through `(y - offset) / scale` as a product with `1/scale`; a
        // scale below ~5.6e-309 has an infinite reciprocal and every value would be NaN.
        if !(1.0 / scale).is_finite() {
            return Err(Error::invalid(format!(
                "scale of channel {which} is too small: its reciprocal overflows (scale must \
                 be above ~5.6e-309), got {scale:e}"
            )));
        }
        if !offset.is_finite() {
            return Err(Error::invalid(format!(
                "offset of channel {which} must be finite, got {offset}"
            )));
        }
        // Rescale by the largest magnitude first so that c_0 neither overflows nor underflows
        // (p is invariant to the scale of a).
        let big = coeffs
            .iter()
            .fold(0.0f64, |m, c| m.max(c.re.abs()).max(c.im.abs()));
        if big == 0.0 {
            return Err(Error::invalid(format!(
                "all coefficients of channel {which} are zero: the density is undefined"
            )));
        }
        // Divide rather than multiply by `1/big`: for a subnormal `big` the reciprocal
        // overflows to inf and every coefficient would become NaN.
        let unit: Vec<C64> = coeffs
            .iter()
            .map(|c| C64::new(c.re / big, c.im / big))
            .collect();
        let c_raw = autocorrelation(&unit);
        let c0 = c_raw[0].re;
        let norm = 1.0 / (2.0 * c0).sqrt();
        let a: Vec<C64> = unit.iter().map(|c| c.scale(norm)).collect();
        let c: Vec<C64> = c_raw.iter().map(|v| v.scale(1.0 / c0)).collect();
        let b: Vec<C64> = (1..c.len())
            .map(|n| {
                // c / (iπn) = -i c / (πn)
                let d = 1.0 / (PI * n as f64);
                C64::new(c[n].im * d, -c[n].re * d)
            })
            .collect();
        let b_at_minus1 = b
            .iter()
            .enumerate()
            .map(|(i, v)| if (i + 1) % 2 == 0 { v.re } else { -v.re })
            .sum();
        Ok(Channel {
            coeffs,
            a,
            c,
            b,
            b_at_minus1,
            scale,
            offset,
        })
    }

    /// The degree N.
    pub fn degree(&self) -> usize {
        self.a.len() - 1
    }

    /// `p(x)` on `[-1, 1]` (scalar reference path, also used by samplers and tables).
    #[inline]
    pub fn density_x(&self, x: f64) -> f64 {
        let z = C64::cis(PI * x);
        horner(&self.a, z).norm_sqr()
    }

    /// `P(x)` on `[-1, 1]`, unclamped.
    #[inline]
    pub fn cdf_x_raw(&self, x: f64) -> f64 {
        let z = C64::cis(PI * x);
        0.5 * (x + 1.0) + horner_shifted(&self.b, z).re - self.b_at_minus1
    }

    /// `(p(x), P(x))` sharing one `sincos` (Newton steps of the inverse CDF).
    #[inline]
    pub fn density_and_cdf_x(&self, x: f64) -> (f64, f64) {
        let z = C64::cis(PI * x);
        let p = horner(&self.a, z).norm_sqr();
        let cdf = 0.5 * (x + 1.0) + horner_shifted(&self.b, z).re - self.b_at_minus1;
        (p, cdf)
    }
}

/// `Σ_k a_k z^k` by Horner.
#[inline]
pub fn horner(a: &[C64], z: C64) -> C64 {
    let mut acc = C64::default();
    for &ak in a.iter().rev() {
        acc = acc.mul(z).add(ak);
    }
    acc
}

/// `Σ_{n=1..} b_{n-1} z^n` (coefficients stored from the first power).
#[inline]
pub fn horner_shifted(b: &[C64], z: C64) -> C64 {
    horner(b, z).mul(z)
}

/// `c_n = Σ_k a_{k+n} conj(a_k)` for `n = 0..=N`.
pub fn autocorrelation(a: &[C64]) -> Vec<C64> {
    let n1 = a.len();
    (0..n1)
        .map(|n| {
            let mut s = C64::default();
            for k in 0..n1 - n {
                s = s.add(a[k + n].mul(a[k].conj()));
            }
            s
        })
        .collect()
}

/// A batch of channels sharing a degree and a domain.
#[derive(Clone, Debug)]
pub struct Model {
    pub domain: Domain,
    pub channels: Vec<Channel>,
}

impl Model {
    /// `coeffs` is row-major `(C, N+1)`; `scale`/`offset` have length `C` (ignored values must
    /// still be 1 and 0 for the interval domain).
    pub fn new(
        domain: Domain,
        n_channels: usize,
        coeffs: &[C64],
        scale: &[f64],
        offset: &[f64],
    ) -> Result<Model> {
        if n_channels == 0 {
            return Err(Error::invalid("at least one channel is required"));
        }
        if coeffs.is_empty() || coeffs.len() % n_channels != 0 {
            return Err(Error::invalid(format!(
                "{} coefficients cannot be split into {n_channels} channels",
                coeffs.len()
            )));
        }
        if scale.len() != n_channels || offset.len() != n_channels {
            return Err(Error::invalid(format!(
                "scale and offset need one value per channel ({n_channels}), got {} and {}",
                scale.len(),
                offset.len()
            )));
        }
        if domain == Domain::Interval
            && (scale.iter().any(|&s| s != 1.0) || offset.iter().any(|&t| t != 0.0))
        {
            return Err(Error::invalid(
                "scale and offset apply only to domain='real'",
            ));
        }
        let width = coeffs.len() / n_channels;
        let channels = coeffs
            .chunks(width)
            .enumerate()
            .map(|(i, row)| Channel::new(row.to_vec(), scale[i], offset[i], i))
            .collect::<Result<Vec<_>>>()?;
        Ok(Model { domain, channels })
    }

    pub fn degree(&self) -> usize {
        self.channels[0].degree()
    }

    pub fn n_channels(&self) -> usize {
        self.channels.len()
    }
}

/// `log sech²(z)` without the underflow of `1 - tanh²`: exact to rounding for every finite z.
#[inline]
pub fn log_sech2(z: f64) -> f64 {
    let az = z.abs();
    2.0 * (std::f64::consts::LN_2 - az - (-2.0 * az).exp().ln_1p())
}

/// `sech²(z)`, no overflow for large |z|.
#[inline]
pub fn sech2(z: f64) -> f64 {
    let e = (-2.0 * z.abs()).exp();
    4.0 * e / ((1.0 + e) * (1.0 + e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_coeffs() -> Vec<C64> {
        vec![
            C64::new(1.0, 0.0),
            C64::new(0.3, -0.2),
            C64::new(-0.1, 0.4),
            C64::new(0.05, 0.05),
        ]
    }

    #[test]
    fn normaliser_and_edges() {
        let ch = Channel::new(sample_coeffs(), 1.0, 0.0, 0).unwrap();
        // Trapezoid on a periodic trig polynomial is exact with more nodes than its degree.
        let n = 64;
        let integral: f64 = (0..n)
            .map(|j| ch.density_x(-1.0 + 2.0 * j as f64 / n as f64))
            .sum::<f64>()
            * 2.0
            / n as f64;
        assert!((integral - 1.0).abs() < 1e-13, "{integral}");
        assert!(ch.cdf_x_raw(-1.0).abs() < 1e-15);
        assert!((ch.cdf_x_raw(1.0) - 1.0).abs() < 1e-15);
        assert!((ch.density_x(-1.0) - ch.density_x(1.0)).abs() < 1e-14);
    }

    #[test]
    fn autocorrelation_matches_trig_form() {
        let ch = Channel::new(sample_coeffs(), 1.0, 0.0, 0).unwrap();
        for &x in &[-0.9, -0.2, 0.0, 0.37, 0.99] {
            let mut f = ch.c[0].re;
            for n in 1..ch.c.len() {
                f += 2.0 * ch.c[n].mul(C64::cis(PI * n as f64 * x)).re;
            }
            let p = f / 2.0;
            assert!((p - ch.density_x(x)).abs() < 1e-14);
        }
    }

    #[test]
    fn rejects_bad_coefficients() {
        assert!(Channel::new(vec![], 1.0, 0.0, 0).is_err());
        assert!(Channel::new(vec![C64::default(); 3], 1.0, 0.0, 0).is_err());
        assert!(Channel::new(vec![C64::new(f64::NAN, 0.0)], 1.0, 0.0, 0).is_err());
        assert!(Channel::new(sample_coeffs(), 0.0, 0.0, 0).is_err());
        assert!(Channel::new(sample_coeffs(), -1.0, 0.0, 0).is_err());
        assert!(Channel::new(sample_coeffs(), 1.0, f64::INFINITY, 0).is_err());
        // Positive but with an infinite reciprocal: pdf/cdf would be NaN everywhere.
        assert!(Channel::new(sample_coeffs(), 1e-310, 0.0, 0).is_err());
        assert!(Channel::new(sample_coeffs(), 1e-308, 0.0, 0).is_ok());
        // Huge and tiny magnitudes are fine: only the direction of a matters.
        let big: Vec<C64> = sample_coeffs().iter().map(|c| c.scale(1e300)).collect();
        let small: Vec<C64> = sample_coeffs().iter().map(|c| c.scale(1e-300)).collect();
        let a = Channel::new(big, 1.0, 0.0, 0).unwrap();
        let b = Channel::new(small, 1.0, 0.0, 0).unwrap();
        assert!((a.density_x(0.3) - b.density_x(0.3)).abs() < 1e-14);
    }

    #[test]
    fn log_sech2_is_stable() {
        for &z in &[0.0, 0.5, -3.0, 19.0, -40.0, 700.0, -700.0, 1e5] {
            let v = log_sech2(z);
            assert!(v.is_finite());
            if z.abs() < 15.0 {
                let naive = (1.0 - z.tanh().powi(2)).ln();
                assert!((v - naive).abs() < 1e-9 * (1.0 + naive.abs()), "{z}");
            }
        }
        assert!((log_sech2(700.0) - 2.0 * (std::f64::consts::LN_2 - 700.0)).abs() < 1e-12);
    }
}
