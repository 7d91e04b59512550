//! Bin masses without cancellation and quantised CDF tables for range coders.
//!
//! `P(u) - P(l)` subtracts two numbers near each other when the bin is narrow or deep in a
//! tail. The product form works with the bin's centre `m` and half-width `h` in `x`-space:
//! `h + (2/π) Σ_n Re(ĉ_n e^{iπnm}) sin(πnh)/n` (`ĉ = c/c_0`), and on the real line `h` and `m`
//! come from `sinh`/`exp` identities of the `tanh` endpoints rather than from their difference,
//! so a bin 30 scales out in the tail still gets its ~e^{-60} mass to full relative precision.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::eval::{check_rows, CHUNK};
use super::model::{Channel, Domain, Model, C64};
use crate::error::{Error, Result};
use crate::parallel;

/// Logistic `1 / (1 + e^{-v})` without overflow.
#[inline]
fn logistic(v: f64) -> f64 {
    if v >= 0.0 {
        1.0 / (1.0 + (-v).exp())
    } else {
        let e = v.exp();
        e / (1.0 + e)
    }
}

/// Centre and half-width in `x = tanh(z)` space of the bin `[za, zb]` (`za ≤ zb`), computed
/// without subtracting nearby `tanh` values.
fn tanh_bin(za: f64, zb: f64) -> (f64, f64) {
    match (za == f64::NEG_INFINITY, zb == f64::INFINITY) {
        (true, true) => return (0.0, 1.0),
        // (1 + tanh b) / 2 = σ(2b)
        (true, false) => {
            let h = logistic(2.0 * zb);
            return (-1.0 + h, h);
        }
        (false, true) => {
            let h = logistic(-2.0 * za);
            return (1.0 - h, h);
        }
        _ => {}
    }
    let (ta, tb) = (za.tanh(), zb.tanh());
    let m = 0.5 * (ta + tb);
    if za <= 0.0 && zb >= 0.0 {
        // Opposite signs: the difference is a sum of magnitudes, no cancellation.
        return (m, 0.5 * (tb - ta));
    }
    // Same sign: (tanh b − tanh a)/2 = e^{−2 min(|a|,|b|)}·(−expm1(−2d)) /
    //                                  ((1 + e^{−2|a|})(1 + e^{−2|b|})),  d = b − a.
    let (aa, ab) = (za.abs(), zb.abs());
    let d = zb - za;
    let h = (-2.0 * aa.min(ab)).exp() * -(-2.0 * d).exp_m1()
        / ((1.0 + (-2.0 * aa).exp()) * (1.0 + (-2.0 * ab).exp()));
    (m, h)
}

/// Mass of `[m - h, m + h] ⊂ [-1, 1]` under the channel's `p`, product form.
#[inline]
pub fn mass_mh(ch: &Channel, m: f64, h: f64) -> f64 {
    if !(h > 0.0) {
        return if h.is_nan() || m.is_nan() {
            f64::NAN
        } else {
            0.0
        };
    }
    let w = C64::cis(std::f64::consts::PI * m);
    let v = C64::cis(std::f64::consts::PI * h);
    // Powers by repeated multiplication: Im(v^n) keeps full relative precision for small h
    // because every term in the product is positive while nh < 1/2.
    let mut wn = w;
    let mut vn = v;
    let mut acc = 0.0;
    for n in 1..ch.c.len() {
        acc += ch.c[n].mul(wn).re * vn.im / n as f64;
        wn = wn.mul(w);
        vn = vn.mul(v);
    }
    let mass = h + (2.0 / std::f64::consts::PI) * acc;
    mass.clamp(0.0, 1.0)
}

/// Probability of `[lower, upper]` for one channel in the model's own coordinates.
pub fn bin_mass_one(ch: &Channel, domain: Domain, lower: f64, upper: f64) -> f64 {
    if lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if upper <= lower {
        return 0.0;
    }
    let (m, h) = match domain {
        Domain::Interval => {
            let (l, u) = (lower.max(-1.0), upper.min(1.0));
            if u <= l {
                return 0.0;
            }
            (0.5 * (l + u), 0.5 * (u - l))
        }
        Domain::Real => {
            let inv = 1.0 / ch.scale;
            tanh_bin((lower - ch.offset) * inv, (upper - ch.offset) * inv)
        }
    };
    mass_mh(ch, m, h)
}

/// Bin masses for every channel; `lower`/`upper` are laid out like [`super::eval::evaluate`]'s
/// points (`rows` is 1 or C). `lower > upper` anywhere is an error.
pub fn bin_mass(
    model: &Model,
    lower: &[f64],
    upper: &[f64],
    rows: usize,
    m: usize,
    num_threads: Option<usize>,
) -> Result<Vec<f64>> {
    let c = model.n_channels();
    check_rows(c, lower.len(), rows, m)?;
    check_rows(c, upper.len(), rows, m)?;
    if let Some(i) = lower.iter().zip(upper).position(|(l, u)| l > u) {
        return Err(Error::invalid(format!(
            "lower > upper at flat index {i} ({} > {})",
            lower[i], upper[i]
        )));
    }
    let mut out = vec![0.0; c * m];
    if m == 0 {
        return Ok(out);
    }
    let tasks = c * m.div_ceil(CHUNK / 4);
    let domain = model.domain;
    parallel::run(num_threads, tasks, |par| {
        parallel::for_each_chunk(par, &mut out, m, |ci, row| {
            let base = if rows == 1 { 0 } else { ci * m };
            let ch = &model.channels[ci];
            parallel::for_each_chunk(par, row, CHUNK / 4, |k, o| {
                let start = base + k * (CHUNK / 4);
                for (j, v) in o.iter_mut().enumerate() {
                    *v = bin_mass_one(ch, domain, lower[start + j], upper[start + j]);
                }
            });
        });
    })?;
    Ok(out)
}

/// Quantised CDF tables, one row per channel, as range coders (e.g. `constriction`, TFC's
/// `range_coder`) consume them.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedCdf {
    /// Row-major `(C, width)`; row `c` holds `lengths[c]` entries `0 = F_0 < … = 2^precision`,
    /// padded with `2^precision`.
    pub cdf: Vec<i32>,
    pub width: usize,
    /// Number of valid CDF entries per row (symbols + 1).
    pub lengths: Vec<i32>,
    /// Value of symbol 0 per channel (real line: the smallest integer coded directly).
    pub offsets: Vec<i32>,
    /// Whether the last symbol of each row is the overflow (escape) symbol.
    pub has_overflow: bool,
}

/// Orders heap keys by `f64::total_cmp`, ties by index so that results are deterministic.
#[derive(PartialEq)]
struct Key(f64, usize);
impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Key {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.total_cmp(&o.0).then(o.1.cmp(&self.1))
    }
}

/// Integer frequencies summing to `2^precision`, each ≥ 1, close to `pmf` in code length:
/// start from rounding, then move single counts where they cost the fewest expected bits.
pub fn quantize_pmf(pmf: &[f64], precision: u32) -> Result<Vec<u32>> {
    let total = 1u64 << precision;
    let n = pmf.len();
    if n == 0 {
        return Err(Error::invalid("cannot quantise an empty pmf"));
    }
    if n as u64 > total {
        return Err(Error::Limit(format!(
            "{n} symbols do not fit a {precision}-bit table (every symbol needs mass >= 1); \
             raise precision or tail_mass"
        )));
    }
    let mut f: Vec<u64> = pmf
        .iter()
        .map(|&p| ((p.max(0.0) * total as f64).round() as u64).max(1))
        .collect();
    let sum: u64 = f.iter().sum();
    if sum < total {
        // Gain in expected log-likelihood from one more count: p·ln((f+1)/f).
        let gain = |p: f64, f: u64| p.max(0.0) * ((f + 1) as f64 / f as f64).ln();
        let mut heap: BinaryHeap<Key> = (0..n).map(|i| Key(gain(pmf[i], f[i]), i)).collect();
        for _ in 0..total - sum {
            let Key(_, i) = heap.pop().expect("heap holds every symbol");
            f[i] += 1;
            heap.push(Key(gain(pmf[i], f[i]), i));
        }
    } else if sum > total {
        // Cost of one count fewer: p·ln(f/(f−1)); symbols at 1 are not candidates.
        let cost = |p: f64, f: u64| -> f64 {
            if f <= 1 {
                f64::INFINITY
            } else {
                p.max(0.0) * (f as f64 / (f - 1) as f64).ln()
            }
        };
        let mut heap: BinaryHeap<Key> = (0..n).map(|i| Key(-cost(pmf[i], f[i]), i)).collect();
        for _ in 0..sum - total {
            let Key(k, i) = heap.pop().expect("heap holds every symbol");
            if k == f64::NEG_INFINITY {
                return Err(Error::Internal("no symbol left to shrink".into()));
            }
            f[i] -= 1;
            heap.push(Key(-cost(pmf[i], f[i]), i));
        }
    }
    Ok(f.into_iter().map(|v| v as u32).collect())
}

/// Smallest `k` in `lo..=hi` with `pred(k)` for a predicate that is false then true;
/// `None` if it is false at `hi`.
fn first_true(mut lo: i64, mut hi: i64, pred: impl Fn(i64) -> bool) -> Option<i64> {
    if !pred(hi) {
        return None;
    }
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Some(lo)
}

/// Largest symbol magnitude of real-line tables: half the `i32` range, so that offsets and
/// symbol values stay representable with room to spare.
const MAX_SYMBOL: i64 = 1 << 30;

/// `(floor(q_lo), ceil(q_hi))` for the `half_tail` and `1 − half_tail` quantiles, as integers:
/// the largest `k` with `P(y ≤ k) ≤ half_tail` and the smallest `k` with `P(y ≥ k) ≤ half_tail`.
/// Both tails come from [`bin_mass_one`], whose tail masses keep full relative precision, so a
/// tiny `tail_mass` works on both sides; the inverse CDF at `1 − half_tail` would lose
/// `half_tail` to rounding (`1 − 5e-17 == 1.0`) and put the upper end at `+inf`. `None` when the
/// range is not within `±2^30`.
fn central_range(ch: &Channel, half_tail: f64) -> Option<(f64, f64)> {
    let lower = |k: i64| bin_mass_one(ch, Domain::Real, f64::NEG_INFINITY, k as f64);
    let upper = |k: i64| bin_mass_one(ch, Domain::Real, k as f64, f64::INFINITY);
    // The lower tail mass grows with k: the first k where it exceeds half_tail, minus one.
    let lo = first_true(-MAX_SYMBOL, MAX_SYMBOL, |k| lower(k) > half_tail)? - 1;
    let hi = first_true(-MAX_SYMBOL, MAX_SYMBOL, |k| upper(k) <= half_tail)?;
    if lo < -MAX_SYMBOL {
        return None;
    }
    // L(k) + U(k) = 1 and half_tail < 1/2 give hi > lo; max() only guards rounding.
    Some((lo as f64, hi.max(lo) as f64))
}

/// Builds the tables. Real line: integer bins `[k − ½, k + ½]` for `k` between the
/// `tail_mass/2` and `1 − tail_mass/2` quantiles, plus one overflow symbol carrying the mass
/// outside (values there are escaped and coded by other means, e.g. Elias-gamma). Interval:
/// `num_bins` equal bins of `[-1, 1]`, no overflow symbol (the support is bounded).
pub fn quantized_cdf(
    model: &Model,
    precision: u32,
    tail_mass: f64,
    num_bins: usize,
) -> Result<QuantizedCdf> {
    if !(1..=30).contains(&precision) {
        return Err(Error::invalid(format!(
            "precision must be in 1..=30 bits, got {precision}"
        )));
    }
    let rows: Vec<(Vec<u32>, i32)> = match model.domain {
        Domain::Interval => {
            if num_bins == 0 {
                return Err(Error::invalid("num_bins must be at least 1"));
            }
            // Checked before anything is allocated: `quantize_pmf` would reject the table
            // anyway (every symbol needs a count >= 1), but only after computing and storing
            // every bin mass, which for a huge `num_bins` exhausts memory or time first.
            if num_bins as u64 > 1u64 << precision {
                return Err(Error::Limit(format!(
                    "num_bins = {num_bins} does not fit a {precision}-bit table (at most \
                     2**{precision} = {} bins, every bin needs mass >= 1); lower num_bins or \
                     raise precision",
                    1u64 << precision
                )));
            }
            if model.n_channels().checked_mul(num_bins + 1).is_none() {
                return Err(Error::Limit(format!(
                    "num_bins = {num_bins}: a table of {} rows does not fit in memory",
                    model.n_channels()
                )));
            }
            model
                .channels
                .iter()
                .map(|ch| {
                    let w = 2.0 / num_bins as f64;
                    let pmf: Vec<f64> = (0..num_bins)
                        .map(|j| mass_mh(ch, -1.0 + (j as f64 + 0.5) * w, 0.5 * w))
                        .collect();
                    Ok((quantize_pmf(&pmf, precision)?, 0))
                })
                .collect::<Result<_>>()?
        }
        Domain::Real => {
            if !(tail_mass > 0.0 && tail_mass < 1.0) {
                return Err(Error::invalid(format!(
                    "tail_mass must be in (0, 1), got {tail_mass}"
                )));
            }
            let limit = (1u64 << precision) - 1;
            model
                .channels
                .iter()
                .enumerate()
                .map(|(ci, ch)| {
                    let (lo, hi) = central_range(ch, 0.5 * tail_mass).ok_or_else(|| {
                        Error::Limit(format!(
                            "channel {ci}: the central range holding 1 - tail_mass of the \
                             mass does not fit 32-bit symbols (|k| <= 2**30)"
                        ))
                    })?;
                    let n = (hi - lo) as u64 + 1;
                    if n > limit {
                        return Err(Error::Limit(format!(
                            "channel {ci}: {n} integer bins plus an overflow symbol do not fit a \
                             {precision}-bit table; raise precision or tail_mass"
                        )));
                    }
                    let mut pmf: Vec<f64> = (0..n)
                        .map(|j| {
                            let k = lo + j as f64;
                            bin_mass_one(ch, Domain::Real, k - 0.5, k + 0.5)
                        })
                        .collect();
                    let tails = bin_mass_one(ch, Domain::Real, f64::NEG_INFINITY, lo - 0.5)
                        + bin_mass_one(ch, Domain::Real, hi + 0.5, f64::INFINITY);
                    pmf.push(tails);
                    Ok((quantize_pmf(&pmf, precision)?, lo as i32))
                })
                .collect::<Result<_>>()?
        }
    };
    let width = rows.iter().map(|(f, _)| f.len() + 1).max().unwrap_or(1);
    let total = 1i64 << precision;
    let mut cdf = Vec::with_capacity(rows.len() * width);
    let mut lengths = Vec::with_capacity(rows.len());
    let mut offsets = Vec::with_capacity(rows.len());
    for (freq, off) in rows {
        let mut acc = 0i64;
        cdf.push(0);
        for &v in &freq {
            acc += v as i64;
            cdf.push(acc as i32);
        }
        debug_assert_eq!(acc, total);
        cdf.extend(std::iter::repeat_n(total as i32, width - freq.len() - 1));
        lengths.push((freq.len() + 1) as i32);
        offsets.push(off);
    }
    Ok(QuantizedCdf {
        cdf,
        width,
        lengths,
        offsets,
        has_overflow: model.domain == Domain::Real,
    })
}

#[cfg(test)]
mod tests {
    use super::super::sample;
    use super::*;
    use crate::rng::Stream;
    use proptest::prelude::*;

    fn channel(n: usize, seed: u64, scale: f64) -> Channel {
        let mut s = Stream::new(seed, 0);
        let a = (0..=n).map(|_| C64::new(s.normal(), s.normal())).collect();
        Channel::new(a, scale, 0.2, 0).unwrap()
    }

    #[test]
    fn product_form_equals_cdf_difference() {
        let ch = channel(12, 4, 1.0);
        for &(l, u) in &[(-1.0, 1.0), (-0.3, 0.2), (0.5, 0.5001), (-1.0, -0.99)] {
            let want = ch.cdf_x_raw(u) - ch.cdf_x_raw(l);
            let got = bin_mass_one(&ch, Domain::Interval, l, u);
            assert!((got - want).abs() < 1e-14, "{l} {u}: {got} {want}");
        }
    }

    #[test]
    fn real_tail_bins_keep_relative_precision() {
        let ch = channel(6, 9, 1.3);
        // Deep in the right tail the density is ≈ 4p(1)/s·e^{−2z}: check the mass against a
        // midpoint rule on the stable log density.
        let z0 = 40.0;
        let (l, u) = (0.2 + 1.3 * z0, 0.2 + 1.3 * (z0 + 0.01));
        let mass = bin_mass_one(&ch, Domain::Real, l, u);
        let mid = 0.5 * (l + u);
        let z = (mid - 0.2) / 1.3;
        let approx =
            (ch.density_x(z.tanh()).ln() + super::super::model::log_sech2(z) - 1.3f64.ln()).exp()
                * (u - l);
        assert!(
            mass > 0.0 && (mass / approx - 1.0).abs() < 1e-4,
            "{mass} {approx}"
        );
    }

    #[test]
    fn quantized_tables_are_valid() {
        let chs = [channel(8, 1, 2.0), channel(8, 2, 0.5)];
        let mut coeffs = chs[0].coeffs.clone();
        coeffs.extend(chs[1].coeffs.iter().copied());
        let m = Model::new(Domain::Real, 2, &coeffs, &[2.0, 0.5], &[0.2, 0.2]).unwrap();
        let q = quantized_cdf(&m, 16, 1e-3, 0).unwrap();
        for c in 0..2 {
            let row = &q.cdf[c * q.width..(c + 1) * q.width];
            let len = q.lengths[c] as usize;
            assert_eq!(row[0], 0);
            assert_eq!(row[len - 1], 1 << 16);
            assert!(row[..len].windows(2).all(|w| w[1] > w[0]));
        }
    }

    #[test]
    fn huge_num_bins_is_rejected_before_allocating() {
        let m = Model::new(Domain::Interval, 1, &[C64::new(1.0, 0.0)], &[1.0], &[0.0]).unwrap();
        // 2^40 bins used to abort on allocation, usize::MAX to overflow its capacity.
        for nb in [17, 1 << 40, usize::MAX] {
            let e = quantized_cdf(&m, 4, 1e-3, nb).unwrap_err();
            assert!(
                matches!(&e, Error::Limit(s) if s.contains("num_bins")),
                "{e}"
            );
        }
        assert_eq!(quantized_cdf(&m, 4, 1e-3, 16).unwrap().width, 17);
    }

    #[test]
    fn central_range_matches_the_quantiles_and_survives_tiny_tails() {
        let chs = [channel(8, 1, 2.0), channel(5, 3, 0.7), channel(0, 1, 1.0)];
        for ch in &chs {
            let table = sample::InverseTable::new(ch);
            for t in [1e-1, 1e-3, 2f64.powi(-8)] {
                let (lo, hi) = central_range(ch, 0.5 * t).unwrap();
                let qlo = table.ppf_y(ch, Domain::Real, 0.5 * t);
                let qhi = table.ppf_y(ch, Domain::Real, 1.0 - 0.5 * t);
                assert_eq!((lo, hi), (qlo.floor(), qhi.ceil()), "t={t}");
            }
            // 1 − 5e-17 rounds to 1.0: the quantile route put the upper end at +inf.
            let (lo, hi) = central_range(ch, 5e-17).unwrap();
            assert!(lo.is_finite() && hi.is_finite() && lo < hi);
            assert!(bin_mass_one(ch, Domain::Real, hi, f64::INFINITY) <= 5e-17);
            assert!(bin_mass_one(ch, Domain::Real, hi - 1.0, f64::INFINITY) > 5e-17);
            assert!(bin_mass_one(ch, Domain::Real, f64::NEG_INFINITY, lo) <= 5e-17);
            assert!(bin_mass_one(ch, Domain::Real, f64::NEG_INFINITY, lo + 1.0) > 5e-17);
        }
        let m = Model::new(Domain::Real, 1, &chs[0].coeffs, &[2.0], &[0.2]).unwrap();
        assert!(quantized_cdf(&m, 16, 1e-16, 0).is_ok());
    }

    proptest! {
        #[test]
        fn quantize_sums_and_floors(p in proptest::collection::vec(0.0f64..1.0, 1..300), prec in 9u32..17) {
            let s: f64 = p.iter().sum();
            let pmf: Vec<f64> = p.iter().map(|v| if s > 0.0 { v / s } else { 1.0 / p.len() as f64 }).collect();
            let f = quantize_pmf(&pmf, prec).unwrap();
            prop_assert_eq!(f.iter().map(|&v| v as u64).sum::<u64>(), 1u64 << prec);
            prop_assert!(f.iter().all(|&v| v >= 1));
        }
    }
}
