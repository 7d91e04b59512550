//! UTF-8 from a text's code units of one width: how CPython stores a non-ASCII `str` (PEP 393:
//! latin-1, UCS-2 or UCS-4, the narrowest that holds its largest character).
//!
//! Why: asking CPython for a `str`'s UTF-8 (`PyUnicode_AsUTF8AndSize`) builds a copy and keeps it
//! on the string, under the GIL. In a batch on threads the GIL-holding thread reads every item
//! and nothing else can, so for Chinese text that copy was ~10 % of a 2-thread batch's time
//! (zh_fortunes, fresh strings) and stayed attached to the user's strings afterwards. The
//! binding reads the code units instead and the workers transcode them here, without the GIL.

/// A text as code units of one width.
#[derive(Clone, Copy, Debug)]
pub enum CodeUnits<'a> {
    Latin1(&'a [u8]),
    Ucs2(&'a [u16]),
    Ucs4(&'a [u32]),
}

impl CodeUnits<'_> {
    /// Position of the first code point UTF-8 cannot hold (a surrogate, U+D800–U+DFFF, or a
    /// value above U+10FFFF), if any.
    pub fn first_unencodable(&self) -> Option<usize> {
        fn bad(c: u32) -> bool {
            (0xD800..0xE000).contains(&c) || c > 0x10FFFF
        }
        match self {
            CodeUnits::Latin1(_) => None,
            CodeUnits::Ucs2(u) => u.iter().position(|&c| bad(c as u32)),
            CodeUnits::Ucs4(u) => u.iter().position(|&c| bad(c)),
        }
    }
}

/// Whether latin-1 and UCS-2 text transcode with the vector kernel here (about 0.25 ns per
/// character against 1–2 ns for the scalar loop, which is no faster than CPython's own
/// encoder: the binding only reads such strings as code units when this holds).
pub fn fast() -> bool {
    #[cfg(target_arch = "x86_64")]
    return avx512::usable();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Appends the UTF-8 of `text` to `out`. `Err(position)`: the code point there cannot be
/// encoded (see [`CodeUnits::first_unencodable`]; `str.encode("utf-8")` rejects the same),
/// and `out` is left as it was.
pub fn push_utf8(text: CodeUnits<'_>, out: &mut String) -> Result<(), usize> {
    let start = out.len();
    let done = vector_prefix(text, out);
    let r = match text {
        CodeUnits::Latin1(u) => push_units(&u[done..], 2, out),
        CodeUnits::Ucs2(u) => push_units(&u[done..], 3, out),
        CodeUnits::Ucs4(u) => push_units(&u[done..], 4, out),
    }
    .map_err(|k| done + k);
    if r.is_err() {
        out.truncate(start);
    }
    r
}

/// Appends the UTF-8 of the longest prefix of `text` the vector kernel takes (none without
/// it, and for UCS-4) and returns its length in units.
fn vector_prefix(text: CodeUnits<'_>, out: &mut String) -> usize {
    #[cfg(target_arch = "x86_64")]
    if avx512::usable() {
        // SAFETY: the CPU features were detected at run time (`usable`).
        return unsafe {
            match text {
                CodeUnits::Latin1(u) => avx512::push_latin1(u, out),
                CodeUnits::Ucs2(u) => avx512::push_ucs2(u, out),
                CodeUnits::Ucs4(_) => 0,
            }
        };
    }
    let _ = (text, out);
    0
}

/// [`push_utf8`] for units of at most `max` UTF-8 bytes each, one at a time. On an error
/// `out` may hold part of the text (the caller cuts it back).
fn push_units<T: Copy + Into<u32>>(units: &[T], max: usize, out: &mut String) -> Result<(), usize> {
    let start = out.len();
    let mut bytes = std::mem::take(out).into_bytes();
    // Room for the longest encoding, written by index (one bounds check per byte, no
    // capacity check per push), then cut to what was written.
    bytes.resize(start + max * units.len(), 0);
    let mut p = start;
    let mut result = Ok(());
    for (i, &u) in units.iter().enumerate() {
        let c: u32 = u.into();
        if c < 0x80 {
            bytes[p] = c as u8;
            p += 1;
        } else if c < 0x800 {
            bytes[p] = 0xC0 | (c >> 6) as u8;
            bytes[p + 1] = 0x80 | (c & 0x3F) as u8;
            p += 2;
        } else if c < 0x1_0000 {
            if (0xD800..0xE000).contains(&c) {
                result = Err(i);
                p = start;
                break;
            }
            bytes[p] = 0xE0 | (c >> 12) as u8;
            bytes[p + 1] = 0x80 | ((c >> 6) & 0x3F) as u8;
            bytes[p + 2] = 0x80 | (c & 0x3F) as u8;
            p += 3;
        } else if c <= 0x10_FFFF {
            bytes[p] = 0xF0 | (c >> 18) as u8;
            bytes[p + 1] = 0x80 | ((c >> 12) & 0x3F) as u8;
            bytes[p + 2] = 0x80 | ((c >> 6) & 0x3F) as u8;
            bytes[p + 3] = 0x80 | (c & 0x3F) as u8;
            p += 4;
        } else {
            result = Err(i);
            p = start;
            break;
        }
    }
    bytes.truncate(p);
    debug_assert!(std::str::from_utf8(&bytes).is_ok());
    // SAFETY: the bytes before `start` were a `String`; after them only whole encodings of
    // scalar values (no surrogate, at most U+10FFFF) were written, or nothing (an error cuts
    // back to `start`): valid UTF-8 (the property tests compare with `char`'s encoder).
    // `String::from_utf8` would check it again at about the transcoding's own cost.
    *out = unsafe { String::from_utf8_unchecked(bytes) };
    result
}

/// UCS-2 to UTF-8, 16 units per step: each unit's three candidate bytes (for its 1-, 2- or
/// 3-byte form) are laid out in order by one byte permute, and the ones its form uses are
/// packed together by one compress (`vpcompressb`, mask from the length classes by `pdep`).
/// Chinese text mixes forms within a few characters (only 28% of zh_fortunes' 16-character
/// blocks are all 3-byte, 16% all ASCII), which the scalar loop pays for in mispredicted
/// branches: zh_fortunes as one UCS-2 array (950k characters, Zen 4) 1.67 ns per character
/// scalar, 0.24 here. Tried: a branch-free scalar loop (all three forms built, the right one
/// selected by masks and stored as one 4-byte word): 2.41 ns, more work than the branches.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// Whether [`push_ucs2`] can run (and the SIMD level allows it). Asked once per batch
    /// item by the binding: the CPU's answer is kept.
    pub fn usable() -> bool {
        static CPU: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        crate::simd::level() == crate::simd::Level::Avx512
            && *CPU.get_or_init(|| {
                std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512vbmi")
                    && std::arch::is_x86_feature_detected!("avx512vbmi2")
                    && std::arch::is_x86_feature_detected!("bmi2")
                    && std::arch::is_x86_feature_detected!("popcnt")
            })
    }

    /// Bits `3k + j` for `k < 16`.
    const fn every_third(j: u32) -> u64 {
        let mut m = 0u64;
        let mut k = 0;
        while k < 16 {
            m |= 1 << (3 * k + j);
            k += 1;
        }
        m
    }

    /// Byte `3k + j` of a step's output is byte `k` of candidate `j` (candidates at 16·j).
    const fn interleave() -> [u8; 64] {
        let mut t = [63u8; 64];
        let mut k = 0;
        while k < 16 {
            let mut j = 0;
            while j < 3 {
                t[3 * k + j] = (16 * j + k) as u8;
                j += 1;
            }
            k += 1;
        }
        t
    }
    const INTERLEAVE: [u8; 64] = interleave();

    /// Appends the UTF-8 of a prefix of `u` to `out` and returns its length (a multiple of
    /// 16): it stops before the first step holding a surrogate, which the scalar loop then
    /// reports.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi,avx512vbmi2,bmi2,popcnt")]
    pub unsafe fn push_ucs2(u: &[u16], out: &mut String) -> usize {
        push_narrow::<2>(u.as_ptr().cast(), u.len(), out)
    }

    /// [`push_ucs2`] for latin-1 units (widened to 16 bits as they are loaded).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vbmi,avx512vbmi2,bmi2,popcnt")]
    pub unsafe fn push_latin1(u: &[u8], out: &mut String) -> usize {
        push_narrow::<1>(u.as_ptr(), u.len(), out)
    }

    /// The kernel of [`push_ucs2`] for `n` units of `W` bytes at `src`.
    #[inline(always)]
    unsafe fn push_narrow<const W: usize>(src: *const u8, n: usize, out: &mut String) -> usize {
        let start = out.len();
        let mut bytes = std::mem::take(out).into_bytes();
        // 48 bytes at most per step, each stored as a 64-byte vector.
        bytes.reserve(3 * n + 64);
        let dst = bytes.as_mut_ptr().add(start);
        let perm = _mm512_loadu_si512(INTERLEAVE.as_ptr().cast());
        let (x80, x3f) = (_mm256_set1_epi16(0x80), _mm256_set1_epi16(0x3F));
        let (xc0, xe0) = (_mm256_set1_epi16(0xC0), _mm256_set1_epi16(0xE0));
        let (x800, xf800, xd800) = (
            _mm256_set1_epi16(0x800),
            _mm256_set1_epi16(0xF800u16 as i16),
            _mm256_set1_epi16(0xD800u16 as i16),
        );
        let mut i = 0;
        let mut p = 0;
        while i + 16 <= n {
            let v = if W == 1 {
                _mm256_cvtepu8_epi16(_mm_loadu_si128(src.add(i).cast()))
            } else {
                _mm256_loadu_si256(src.add(2 * i).cast())
            };
            if _mm256_cmpeq_epi16_mask(_mm256_and_si256(v, xf800), xd800) != 0 {
                break;
            }
            let ge2 = _mm256_cmpge_epu16_mask(v, x80);
            let ge3 = _mm256_cmpge_epu16_mask(v, x800);
            let lo = _mm256_or_si256(_mm256_and_si256(v, x3f), x80);
            let v6 = _mm256_srli_epi16::<6>(v);
            let mid = _mm256_or_si256(_mm256_and_si256(v6, x3f), x80);
            let lead2 = _mm256_or_si256(v6, xc0);
            let lead3 = _mm256_or_si256(_mm256_srli_epi16::<12>(v), xe0);
            let b0 = _mm256_mask_blend_epi16(ge3, _mm256_mask_blend_epi16(ge2, v, lead2), lead3);
            let b1 = _mm256_mask_blend_epi16(ge3, lo, mid);
            let z = _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm256_inserti128_si256::<1>(
                    _mm256_castsi128_si256(_mm256_cvtepi16_epi8(b0)),
                    _mm256_cvtepi16_epi8(b1),
                )),
                _mm256_castsi128_si256(_mm256_cvtepi16_epi8(lo)),
            );
            let y = _mm512_permutexvar_epi8(perm, z);
            let keep = _pdep_u64(0xFFFF, every_third(0))
                | _pdep_u64(ge2 as u64, every_third(1))
                | _pdep_u64(ge3 as u64, every_third(2));
            // SAFETY (of the store): `p ≤ 3i`, and the reserve above left `3·len + 64` bytes
            // past `start`: the 64 bytes at `p` are in the allocation.
            _mm512_storeu_si512(dst.add(p).cast(), _mm512_maskz_compress_epi8(keep, y));
            p += keep.count_ones() as usize;
            i += 16;
        }
        // SAFETY: the first `start` bytes were the `String`'s; the next `p` were written above
        // (each step's kept bytes follow the previous step's) and lie within the capacity:
        // the encodings of units that are not surrogates (checked per step), valid UTF-8.
        bytes.set_len(start + p);
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        // SAFETY: as just said, valid UTF-8.
        *out = String::from_utf8_unchecked(bytes);
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utf8(text: CodeUnits<'_>) -> Result<String, usize> {
        let mut s = String::from("pre");
        let r = push_utf8(text, &mut s);
        match r {
            Ok(()) => Ok(s[3..].to_string()),
            Err(i) => {
                assert_eq!(s, "pre", "out is left as it was on an error");
                Err(i)
            }
        }
    }

    #[test]
    fn every_width_matches_std() {
        let text = "aé€😀\u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}\u{0}z";
        let cps: Vec<u32> = text.chars().map(|c| c as u32).collect();
        assert_eq!(utf8(CodeUnits::Ucs4(&cps)).unwrap(), text);
        let bmp: String = text.chars().filter(|&c| (c as u32) < 0x1_0000).collect();
        let u2: Vec<u16> = bmp.chars().map(|c| c as u32 as u16).collect();
        assert_eq!(utf8(CodeUnits::Ucs2(&u2)).unwrap(), bmp);
        let l1: Vec<u8> = (0u8..=255).collect();
        let want: String = l1.iter().map(|&b| b as char).collect();
        assert_eq!(utf8(CodeUnits::Latin1(&l1)).unwrap(), want);
        assert_eq!(utf8(CodeUnits::Ucs2(&[])).unwrap(), "");
    }

    #[test]
    fn surrogates_and_out_of_range_are_rejected_where_they_are() {
        for (units, at) in [
            (vec![0x61u16, 0xD800], 1usize),
            (vec![0xDFFF], 0),
            (vec![0x4E2D, 0x6587, 0xDC00, 0x61], 2),
        ] {
            assert_eq!(utf8(CodeUnits::Ucs2(&units)), Err(at));
            assert_eq!(CodeUnits::Ucs2(&units).first_unencodable(), Some(at));
        }
        for (units, at) in [(vec![0x1F600u32, 0xD800], 1usize), (vec![0x11_0000], 0)] {
            assert_eq!(utf8(CodeUnits::Ucs4(&units)), Err(at));
            assert_eq!(CodeUnits::Ucs4(&units).first_unencodable(), Some(at));
        }
        assert_eq!(CodeUnits::Ucs2(&[0xD7FF, 0xE000]).first_unencodable(), None);
    }

    /// Mixed 1-, 2- and 3-byte units at every length to 100 (the vector steps and the scalar
    /// tail), and a surrogate at every position: the vector kernel where the CPU has it, and
    /// the scalar loop, against `String::from_utf16`.
    #[test]
    fn long_mixed_ucs2_and_surrogates_anywhere() {
        let pool: [u16; 8] = [0x41, 0x20, 0xE9, 0x7FF, 0x800, 0x4E2D, 0xD7FF, 0xFFFF];
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for n in 0..100 {
            let units: Vec<u16> = (0..n)
                .map(|_| {
                    seed = crate::rng::mix64(seed);
                    pool[(seed % 8) as usize]
                })
                .collect();
            let want = String::from_utf16(&units).unwrap();
            assert_eq!(utf8(CodeUnits::Ucs2(&units)).unwrap(), want, "n={n}");
            let mut scalar = String::from("pre");
            push_units(&units, 3, &mut scalar).unwrap();
            assert_eq!(&scalar[3..], want);
            #[cfg(target_arch = "x86_64")]
            if avx512::usable() {
                let mut v = String::from("pre");
                // SAFETY: `usable` detected the features.
                let done = unsafe { avx512::push_ucs2(&units, &mut v) };
                assert_eq!(done, n / 16 * 16);
                assert_eq!(v[3..], *String::from_utf16(&units[..done]).unwrap());
            }
            let l1: Vec<u8> = units.iter().map(|&c| c as u8).collect();
            let want1: String = l1.iter().map(|&b| b as char).collect();
            assert_eq!(utf8(CodeUnits::Latin1(&l1)).unwrap(), want1, "n={n}");
            for at in 0..n {
                let mut bad = units.clone();
                bad[at] = 0xD800 + (at as u16 % 0x800);
                assert_eq!(utf8(CodeUnits::Ucs2(&bad)), Err(at), "n={n} at={at}");
            }
        }
    }

    proptest! {
        #[test]
        fn any_text_round_trips(s in "\\PC*") {
            let cps: Vec<u32> = s.chars().map(|c| c as u32).collect();
            prop_assert_eq!(utf8(CodeUnits::Ucs4(&cps)).unwrap(), s.clone());
            if cps.iter().all(|&c| c < 0x1_0000) {
                let u2: Vec<u16> = cps.iter().map(|&c| c as u16).collect();
                prop_assert_eq!(utf8(CodeUnits::Ucs2(&u2)).unwrap(), s.clone());
            }
            if cps.iter().all(|&c| c < 0x100) {
                let l1: Vec<u8> = cps.iter().map(|&c| c as u8).collect();
                prop_assert_eq!(utf8(CodeUnits::Latin1(&l1)).unwrap(), s);
            }
        }

        #[test]
        fn any_code_units_match_std_or_are_rejected(units in proptest::collection::vec(0u32..0x11_0100, 0..40)) {
            let want: Option<String> = units.iter().map(|&c| char::from_u32(c)).collect();
            match utf8(CodeUnits::Ucs4(&units)) {
                Ok(s) => prop_assert_eq!(Some(s), want),
                Err(i) => {
                    prop_assert!(want.is_none());
                    prop_assert!(char::from_u32(units[i]).is_none());
                    prop_assert!(units[..i].iter().all(|&c| char::from_u32(c).is_some()));
                }
            }
        }
    }
}
