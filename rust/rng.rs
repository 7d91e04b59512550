//! Per-item random streams.
//!
//! Item `i` of a batch seeded with `seed` draws from [`Stream::new(seed, i)`], so results never
//! depend on thread count, batch split or worker process. The generator is xoshiro256++ whose
//! state is expanded from `(seed, i)` by SplitMix64; the perfect sampler takes one word of it
//! as the key of counter-based draws ([`Draws`], SplitMix64 outputs by index). Both algorithms are written out here (not
//! taken from a crate) so the values are frozen forever: `tests::frozen_values` pins them, and
//! changing them is a breaking change.

pub(crate) const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
/// [`mix64`]'s multipliers (shared with vector kernels that mix eight counters at once).
pub(crate) const MIX1: u64 = 0xBF58_476D_1CE4_E5B9;
pub(crate) const MIX2: u64 = 0x94D0_49BB_1331_11EB;

/// The SplitMix64 finaliser: a bijective 64-bit mixer.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(MIX1);
    z = (z ^ (z >> 27)).wrapping_mul(MIX2);
    z ^ (z >> 31)
}

/// Derives a child seed, e.g. `derive_seed(seed, epoch)` for per-epoch streams.
#[inline]
pub fn derive_seed(seed: u64, k: u64) -> u64 {
    mix64(seed ^ mix64(k.wrapping_add(0x632B_E59B_D9B4_E019)))
}

/// A fresh seed from the operating system (for `seed=None`).
pub fn os_seed() -> u64 {
    let mut buf = [0u8; 8];
    if getrandom::fill(&mut buf).is_err() {
        // No OS entropy source: fall back to time and address entropy. Only reached on exotic
        // platforms; sampling stays valid, just not cryptographically unpredictable.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        return mix64(t ^ (&buf as *const _ as u64));
    }
    u64::from_le_bytes(buf)
}

/// xoshiro256++ seeded from `(seed, stream)`.
#[derive(Clone, Debug)]
pub struct Stream {
    s: [u64; 4],
}

impl Stream {
    /// A constant stream for callers that draw nothing (no seed derivation).
    pub(crate) const fn fixed() -> Self {
        Stream {
            s: [GOLDEN, !GOLDEN, 1, 2],
        }
    }

    pub fn new(seed: u64, stream: u64) -> Self {
        let mut x = derive_seed(seed, stream);
        let mut s = [0u64; 4];
        for v in &mut s {
            x = x.wrapping_add(GOLDEN);
            *v = mix64(x);
        }
        if s == [0; 4] {
            // Unreachable in practice (mix64 is a bijection over 4 distinct inputs), but the
            // all-zero state would make xoshiro emit zeros forever.
            s[0] = GOLDEN;
        }
        Stream { s }
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in the open interval `(0, 1)`: safe to take `ln` of, and of `1 − u`.
    #[inline]
    pub fn next_f64_open(&mut self) -> f64 {
        open_unit(self.next_u64())
    }

    /// Standard Gumbel variate `-ln(-ln U)`.
    #[inline]
    pub fn gumbel(&mut self) -> f64 {
        -(-self.next_f64_open().ln()).ln()
    }

    /// Standard exponential variate.
    #[inline]
    pub fn exponential(&mut self) -> f64 {
        -self.next_f64_open().ln()
    }

    /// Standard normal variate (Box–Muller; one of the pair is discarded to keep the stream
    /// stateless beyond the four words).
    #[inline]
    pub fn normal(&mut self) -> f64 {
        let u1 = self.next_f64_open();
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Uniform integer in `0..n` (Lemire's multiply-shift, rejection-free bias < 2^-64·n).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
}

/// Counter-based uniforms for the perfect sampler: draw `k` (from 0) of a text is
/// SplitMix64's output `mix64(key + (k + 1)·γ)`, its top 53 bits, with `key` one word of the
/// item's [`Stream`].
///
/// Why not the stream itself: each draw is a function of its index alone, so a sampler that
/// replays a text word by word from cached word lattices computes the same bits without a
/// serial chain through a generator's state from one word to the next (xoshiro's ~4-cycle
/// step per edge was the critical path of cached perfect sampling; see `wordsample`).
/// SplitMix64 passes BigCrush; distinct items' keys come from their independent streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Draws {
    state: u64,
}

impl Draws {
    /// Takes the key from one word of `rng`.
    #[inline]
    pub fn new(rng: &mut Stream) -> Self {
        Draws {
            state: rng.next_u64(),
        }
    }

    /// The next draw's 53 bits (what [`Self::next_f64`] scales to `[0, 1)`).
    #[inline(always)]
    pub fn bits(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix64(self.state) >> 11
    }

    /// The 53 bits of the draw `k` places ahead, without advancing.
    #[inline(always)]
    pub fn bits_at(self, k: u64) -> u64 {
        mix64(
            self.state
                .wrapping_add(k.wrapping_add(1).wrapping_mul(GOLDEN)),
        ) >> 11
    }

    /// The counter's state: draw `k` ahead mixes `raw + (k + 1)·γ` (for vector kernels).
    #[inline(always)]
    pub(crate) fn raw(self) -> u64 {
        self.state
    }

    /// Advances past `n` draws.
    #[inline(always)]
    pub fn skip(&mut self, n: u64) {
        self.state = self.state.wrapping_add(n.wrapping_mul(GOLDEN));
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    #[inline(always)]
    pub fn next_f64(&mut self) -> f64 {
        self.bits() as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The open-interval uniform of one `u64` draw (see [`Stream::next_f64_open`]).
#[inline]
fn open_unit(bits: u64) -> f64 {
    // `(2⁵³ − 1) + 0.5` rounds to `2⁵³` (ties to even), i.e. exactly 1.0 once in 2⁵³ draws
    // (a Gumbel of +∞, an infinite real-line Fourier sample); only that draw moves, to the
    // largest double below 1.
    (((bits >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)).min(1.0 - f64::EPSILON / 2.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn open_unit_never_reaches_either_end() {
        use super::open_unit;
        assert!(open_unit(u64::MAX) < 1.0);
        assert_eq!(open_unit(u64::MAX), 1.0 - f64::EPSILON / 2.0);
        assert!(open_unit(0) > 0.0);
        // Every other draw is unchanged by the bound.
        let b = (1u64 << 53) - 2;
        assert_eq!(open_unit(b << 11), (b as f64 + 0.5) / (1u64 << 53) as f64);
    }

    use super::*;

    #[test]
    fn draws_are_frozen_and_skippable() {
        // Part of the seed contract like `frozen_values`.
        let mut d = Draws::new(&mut Stream::new(42, 7));
        let first: Vec<u64> = (0..3).map(|_| d.bits()).collect();
        let mut e = Draws::new(&mut Stream::new(42, 7));
        assert_eq!((0..3).map(|k| e.bits_at(k)).collect::<Vec<_>>(), first);
        e.skip(2);
        assert_eq!(e.bits(), first[2]);
        assert!(first.iter().all(|&b| b < 1 << 53));
        assert_eq!(first, FROZEN_DRAWS);
        let mean = (0..100_000).map(|_| d.next_f64()).sum::<f64>() / 1e5;
        assert!((mean - 0.5).abs() < 0.005, "{mean}");
    }

    const FROZEN_DRAWS: [u64; 3] = [6107238726867154, 8373755430024347, 4685275850383273];

    #[test]
    fn frozen_values() {
        // These values are part of the public contract (reproducible seeds across versions,
        // threads and platforms). Never update them without a major version bump.
        let mut s = Stream::new(0, 0);
        let got: Vec<u64> = (0..3).map(|_| s.next_u64()).collect();
        assert_eq!(got, FROZEN_0_0);
        let mut s = Stream::new(42, 7);
        let got: Vec<u64> = (0..3).map(|_| s.next_u64()).collect();
        assert_eq!(got, FROZEN_42_7);
    }

    const FROZEN_0_0: [u64; 3] = [54250553255864759, 6048555960454316217, 18146738337781327362];
    const FROZEN_42_7: [u64; 3] = [
        11076090470244575186,
        7916854751607074544,
        9429905980709277786,
    ];

    #[test]
    fn streams_differ() {
        let a: Vec<u64> = {
            let mut s = Stream::new(1, 0);
            (0..4).map(|_| s.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut s = Stream::new(1, 1);
            (0..4).map(|_| s.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut s = Stream::new(2, 0);
            (0..4).map(|_| s.next_u64()).collect()
        };
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn uniform_moments() {
        let mut s = Stream::new(3, 9);
        let n = 200_000;
        let mut sum = 0.0;
        let mut sq = 0.0;
        for _ in 0..n {
            let u = s.next_f64();
            assert!((0.0..1.0).contains(&u));
            sum += u;
            sq += u * u;
        }
        let mean = sum / n as f64;
        let var = sq / n as f64 - mean * mean;
        assert!((mean - 0.5).abs() < 0.005, "mean {mean}");
        assert!((var - 1.0 / 12.0).abs() < 0.002, "var {var}");
    }

    #[test]
    fn below_is_in_range() {
        let mut s = Stream::new(5, 5);
        for n in 1..100u64 {
            assert!(s.below(n) < n);
        }
    }
}
