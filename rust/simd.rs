//! Run-time SIMD level selection.
//!
//! Kernels are compiled for several levels (`#[target_feature]` functions) and pick one at run
//! time through [`level`]. The environment variable `PROBCRAFT_SIMD` caps the level
//! (`scalar`, `avx2`, `avx512`, `neon`); `PROBCRAFT_SIMD=scalar` forces the portable path so
//! tests can compare both. [`set_level`] does the same from code (tests, benchmarks).

use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Level {
    Scalar = 1,
    /// AArch64 Advanced SIMD.
    Neon = 2,
    /// x86-64 AVX2 + FMA.
    Avx2 = 3,
    /// x86-64 AVX-512F (+ AVX2/FMA).
    Avx512 = 4,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Neon => "neon",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" | "none" | "off" => Some(Level::Scalar),
            "neon" => Some(Level::Neon),
            "avx2" => Some(Level::Avx2),
            "avx512" | "avx512f" => Some(Level::Avx512),
            _ => None,
        }
    }

    fn from_u8(v: u8) -> Level {
        match v {
            2 => Level::Neon,
            3 => Level::Avx2,
            4 => Level::Avx512,
            _ => Level::Scalar,
        }
    }
}

/// The best level this CPU supports.
pub fn detected() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            return Level::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Level::Avx2;
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            return Level::Neon;
        }
    }
    Level::Scalar
}

/// Every level usable on this CPU, best first.
pub fn available() -> Vec<Level> {
    let best = detected();
    let mut v = vec![best];
    if best == Level::Avx512 {
        v.push(Level::Avx2);
    }
    if best != Level::Scalar {
        v.push(Level::Scalar);
    }
    v
}

static CURRENT: AtomicU8 = AtomicU8::new(0);

/// The level kernels should use now.
#[inline]
pub fn level() -> Level {
    let v = CURRENT.load(Ordering::Relaxed);
    if v != 0 {
        return Level::from_u8(v);
    }
    let mut l = detected();
    if let Ok(s) = std::env::var("PROBCRAFT_SIMD") {
        if let Some(cap) = Level::parse(&s) {
            l = cap_to(l, cap);
        }
    }
    CURRENT.store(l as u8, Ordering::Relaxed);
    l
}

fn cap_to(best: Level, cap: Level) -> Level {
    if cap == Level::Scalar {
        return Level::Scalar;
    }
    let _ = best;
    // The best usable level not above the cap (levels of another architecture fall to scalar).
    available()
        .into_iter()
        .find(|&l| l <= cap)
        .unwrap_or(Level::Scalar)
}

/// Forces a level (capped at what the CPU supports) and returns the one now in use.
pub fn set_level(requested: Level) -> Level {
    let l = cap_to(detected(), requested);
    CURRENT.store(l as u8, Ordering::Relaxed);
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_cap() {
        assert_eq!(Level::parse("Scalar"), Some(Level::Scalar));
        assert_eq!(Level::parse("avx9000"), None);
        assert_eq!(cap_to(Level::Avx2, Level::Scalar), Level::Scalar);
        assert!(available().contains(&Level::Scalar));
        assert_eq!(available()[0], detected());
    }
}
