//! Vectorised `exp` on (−∞, 0] and the softmax inner loops built on it (max, max+min,
//! exp-store-sum, exp-sum, scale, streaming scale).
//!
//! float32 (scalar and AVX-512): `x = (16k + j)·ln2/16 + r` with `n = 16k + j =
//! round(x·16/ln 2)`, `r` in two pieces (Cody–Waite, so that `r` keeps its low bits) and
//! `|r| ≤ ln2/32`; `exp(x) = 2^k·2^(j/16)·(1 + q(r))` with a 16-entry table (`vpermps`) whose
//! rounding errors are added back inside `q`, a cubic fitted here for minimum relative error
//! (1.7e-9), and `2^k` added into the table entry's exponent bits. Measured worst error over
//! 2·10⁷ arguments in [−87, 0]: 0.57 ulp (AVX-512), 0.80 ulp (scalar, no FMA); the two differ
//! by at most 1 ulp (in 1% of arguments). The AVX2 kernel keeps the previous algorithm,
//! `2ⁿ·p(r)` with a fitted degree-6 polynomial on `|r| ≤ ln2/2` (a 16-entry table at 8 lanes
//! needs two permutes and a blend per table). float64 uses the degree-13 Taylor polynomial
//! (truncation error 4e-18).
//!
//! Grid references (float32, temperature 1; [`exp_store_sum_f32_ref`]): softmax only needs
//! `exp(x − ref)` for one reference per block, so the kernels take a grid point near the block
//! maximum — `M·ln2/16` (AVX-512, scalar) or `K·ln 2` (AVX2) — and reduce `x` itself against
//! the same grid: one vector operation fewer and no rounding of `x − m`. Worst error against
//! `exp(x − ref)` in f64: 1.0 ulp (AVX-512, which drops the table correction), 0.66 (scalar),
//! 0.84 (AVX2).
//!
//! Only arguments ≤ 0 occur in softmax (`x − max`). float32 arguments below −87 give exactly
//! 0 (`exp(−87) ≈ 1.6e−38`, just above the smallest normal number; every level compares and
//! masks), so results are never subnormal; float64 compares and masks below the smallest
//! normal result. Either way `exp(−∞) = 0`, which masking relies on. NaN propagates (through
//! `r`; the table index of a NaN lane is harmless). When a block's minimum is known to give
//! arguments ≥ [`EXP_NO_CLAMP`] the AVX-512 float32 kernel drops the clamp and the mask: same
//! bits.
//!
//! Levels: scalar, AVX2+FMA (8/4 lanes, scalar tails) and AVX-512F (16/8 lanes, masked heads
//! and tails; main loops aligned to the input's cache lines). The scalar versions evaluate the
//! same formulas without FMA, so forced-scalar and SIMD runs agree to about one ulp; the
//! tests call every detected level's kernels directly against the scalar ones.
//!
//! Performance notes, AMD EPYC Zen 5 (2-vCPU KVM VM, full 512-bit AVX-512, L2 1 MiB per core,
//! L3 32 MiB: the 16 MiB bench arrays now live in L3 and `np.copyto` runs at 30–55 GB/s, so
//! softmax is compute-bound there). The VM was shared with other jobs throughout: A/B in one
//! process, thread CPU time, min over many; absolute figures moved ±20% between runs.
//! * Issue rates measured with inline asm (12 independent chains, zmm): vfmadd, vmulps, vaddps,
//!   vmaxps and vpermps 2 per cycle each, vpaddd 4, vscalefps 1; mixed FMA+add pairs about 3
//!   vector operations per cycle. The float32 exp-store-sum is bound by that issue rate.
//! * `vscalefps` made the no-clamp kernel *slower* than the clamped one (exp-store-sum of a
//!   1024-wide row in L1: 0.162 against 0.124 ns/element); 2ⁿ built in the exponent bits and a
//!   multiply instead: 0.112.
//! * The table exp (16 entries, cubic: 14 vector operations per 16 elements, 7 of them FMA,
//!   against 16 with 10 FMA): 0.112 → 0.100 ns/element; a whole 1024-wide row in L1 (max+min,
//!   exp-store-sum, scale) 0.219 → ~0.18 together with the item below.
//! * The max+min pass takes its lower bound from an unsigned maximum of the bit patterns
//!   (integer units) instead of vminps (float units, shared with vmaxps): 0.020 → 0.0165
//!   ns/element in L1.
//! * Per row, the scalar f64 `exp` (twice) and `ln` are skipped where they are exp(0), exp(−∞)
//!   or unused (softmax itself does not need `log Σ`).
//! * Prefetch distances re-checked: none is 15–25% slower on all three shapes; the input 4 KiB
//!   ahead is worse on 64×65536; 16 KiB ahead (output 8 KiB) no better than 8 KiB / 4 KiB:
//!   kept. `prefetchnta` for the input: no change. `BLOCK` 4096 instead of 2048: no change.
//! * 8×262144 (rows of 1 MiB; in and out fit in L3, `np.copyto` 45–55 GB/s): per element,
//!   pass 1 (per 2048-block max+min then exp-store-sum) 0.142 ns, with the scale pass 0.165
//!   (0.170 when it ran front to back: it now starts at the last block, still in L2), the whole
//!   call ~0.19. 0.5× of `np.copyto` needs ~0.15: it takes a cheaper exp than this.
//! * Tried and left: deferring each row's scale pass into the next row's first pass (one block
//!   of the previous row after each block of the current one, the last row finished when the
//!   per-thread scratch drops): same bits, no measurable gain (32×1024 in L2 0.20 ns/element
//!   either way, 8×262144 the same), so not worth its raw-pointer bookkeeping. The per-block
//!   libm `exp` of pass 1 replaced by `exp_neg_f64`: no change.
//! * Done in the next round (below): fold `x − m` into the reduction; drop the table-rounding
//!   correction (in the grid kernel only).
//! * Streaming outputs (≥ the LLC): the store fence now runs once per thread and task batch
//!   (when the per-thread scratch drops, `layout::Work::unfenced`) instead of once per row;
//!   outputs with strided rows (built in a scratch row and copied out) no longer stream.
//! * Result, LTO wheels of main and of this work loaded side by side in one Python process
//!   (interleaved bursts of 40 calls, best of 12; `np.copyto` 25–50 GB/s): 4096×1024
//!   0.44–0.55 → 0.48–0.57 of `np.copyto` (+5–9%), 64×65536 0.55–0.62 either way (its 16 MiB in
//!   and 16 MiB out fill the L3: memory-bound, the faster exp does not show), 8×262144 0.38–0.39
//!   → 0.42–0.43 (+10%); in L2 (out=, steady state) 0.29 → 0.27 ns/element on 32×1024 and
//!   0.207 → 0.183 on 8×262144. 512 MiB, 2 threads against 1: 1.56–1.73× for both builds in
//!   the quiet moments (1 thread ~10 GB/s, 2 threads 16–17 GB/s, `np.copyto` 17–19 GB/s); the
//!   per-batch fence was not measurably better here. The second vCPU was rarely idle: a 1.8×
//!   bar needs a quiet machine even to be measured, and the lead's two-process ceiling for
//!   this workload was 1.72×. One quiet `compare.py` run gave 1.79× (10.48 → 18.79 GB/s); one
//!   `scaling_ceiling.py` run gave two processes 1.91× but `num_threads=2` 1.61×: an
//!   in-process gap worth a look on the threading side (task split, pool), not in the kernel.
//!
//! Performance notes, AMD EPYC Zen 5, next round (grid references, max+min in the exp loop;
//! same VM, busier: other jobs compiled and benchmarked on the second vCPU throughout, so
//! single figures moved ±30%; ranges below are from interleaved runs).
//! * Profile first (3000 plain calls on 8×262144, `perf record`): exp-store-sum 46% of the
//!   samples, the scale pass 19%, max+min 10%, libm `exp` (two per block) 2.6%, the rest
//!   Python and allocation. Per pass (Rust, out=, steady state, ns/element): whole call
//!   0.18–0.19; max+min 0.037–0.044 over the array against 0.012 in L1; pass 1 (max+min +
//!   exp-store-sum) 0.131–0.138 against 0.104 for its parts in L1; scale pass 0.036–0.039
//!   against 0.020 in L1. 32×65536 (a row's input and output fit in L2) cost the same per
//!   element as 8×262144: the L2 fit of a row is not what limits; the exp loop is bound by the
//!   FP pipes (7 of its ~14.5 vector operations per 16 elements on the two FMA pipes; the rest
//!   share the other two with the permutes and integer operations).
//! * Grid references (see the module docs): exp-store-sum of a 2048 block in L1, A/B in one
//!   process against the kernel of `x − m`: 0.093 → 0.087 ns/element with the table
//!   correction, 0.082–0.086 without it (kept: 1.0 ulp instead of 0.57 against `exp(x − ref)`,
//!   while the rounding of `x − m` it replaces cost up to 64 ulp). Softmax float32 against an f64
//!   softmax of the same inputs (37×1531, σ = 5): max relative error 2.0e−6 → 2.6e−7 (AVX-512),
//!   1.8e−7 (scalar), 2.3e−7 (AVX2).
//! * The next block's max+min in the exp loop (AVX-512, blocks of equal length): the separate
//!   pass waited on memory (its loads are now interleaved with the FP-bound exp work; the input
//!   prefetch moves to 16 KiB ahead). Whole call, Rust, out=, 8×262144: 0.171–0.179 →
//!   0.147–0.174 ns/element (with the grid kernel).
//! * The per-block ratios `exp(ref_b − ref)` of grid references come from a 16-entry f64 table
//!   and the exponent bits (`softmax.rs`, `ref_ratio`): the 2.6–2.8% in libm `exp` is gone.
//! * After: exp-store-sum (with the next max+min) 58% of the samples, scale 18.5%.
//! * Result, LTO wheels of main and of this work in alternating processes (thread CPU time,
//!   best of 12 bursts of 30 calls, four rounds each, twice), ratio to `np.copyto` of the same
//!   array: 8×262144 plain 0.33–0.44 → 0.38–0.49 (best 21.4 → 22.5 GB/s; `np.copyto`
//!   42–52 GB/s), out= 0.33–0.44 → 0.39–0.48 (best 20.6 → 24.0 GB/s); 4096×1024 0.50–0.72 →
//!   0.46–0.75 plain, 0.47–0.65 → 0.43–0.74 out= (memory-bound; unchanged within the noise);
//!   64×65536 0.47–0.76 → 0.52–0.72 plain, 0.49–0.98 → 0.53–0.76 out= (same). The 0.5 bar
//!   for 8×262144 plain was touched (0.49) but not held on this loaded machine.
//! * Tried and left: the scale of the previous row fused into this row's exp loop (one block
//!   of it per block, in the same 128-element steps): 0.145–0.177 separate against
//!   0.153–0.187 fused, no gain; per-`j` coefficient tables (`T_j`, `T_j·Q0`, `T_j·Q1`: six
//!   FMA-pipe operations instead of seven but three permutes instead of one): slower (grid
//!   kernel / old kernel 1.0 against 0.93 in L1): the permutes share the FP pipes; `prefetchw`
//!   for the output through inline asm (`_MM_HINT_ET0` compiles to `prefetcht0` without the
//!   `prfchw` target feature, unstable in Rust 1.95): no measurable change; a prefetch of the
//!   block before in the (backwards) scale pass: no measurable change. Left for later: the
//!   sum could widen to f64 every 16 vectors instead of 8 (−0.25 operation per vector).
//!
//! Performance notes, Intel Sapphire Rapids (2-vCPU KVM VM with AVX-512, reporting a 260 MiB
//! L3, shared with other jobs: the second vCPU was busy during most measurements); LTO wheel,
//! float32, one thread, `benches/compare.py --engine softmax` (ratios are throughput relative
//! to `np.copyto` of the same array, measured side by side in one process):
//!
//! | case                   | before (AVX2 kernels) | after (AVX-512)             |
//! |------------------------|-----------------------|-----------------------------|
//! | 4096×1024 plain / out= | 0.56 / 0.44           | 0.74 / 0.61 (machine loaded) |
//! | 64×65536 plain / out=  | 0.39 / 0.36           | 0.63 / 0.62 (machine loaded) |
//! | 8×262144 plain / out=  | 0.49 / 0.49           | 0.61 / 0.61 (machine loaded) |
//!
//! (Final figures of this branch: see its last commit message / the report; the table is
//! filled from one full run.) What each step gave, A/B in one process:
//! * AVX-512 versions of the AVX2 kernels (same algorithm and constants): 4096×1024 out=
//!   0.45 → 0.66 of `np.copyto`, 64×65536 0.49 → 0.54, 8×262144 0.47 → 0.63. In L1 the
//!   exp-store-sum pass went from 0.35 to 0.25 ns/element, the max pass from 0.040 to 0.028.
//! * Prefetch: the input 8 KiB ahead instead of 4 KiB (a 1024-wide array's row after next;
//!   the next 2048-element block of a long row, which 4 KiB only half covered) and the output
//!   4 KiB ahead *for writing* (`prefetchw`): the stores had been waiting in the store buffer
//!   for their read-for-ownership, and the in-place scale pass behind them (perf showed the
//!   samples piled on the stores). Together ≈ +0.10 on all three shapes (e.g. 64×65536 out=
//!   0.55 → 0.68); distances 4–16 KiB and the T1/T2 hints measured the same.
//! * Measured compute in cache after that: ~0.38 ns/element for a 1024-wide row (ess 0.21,
//!   max 0.05, scale 0.07, map overhead 0.04) against ~0.3 ns/element for `np.copyto` from
//!   memory — compute-bound, so the rest cut instructions:
//!   - per-row overhead in `layout.rs` (two integer divisions per row and array for the row
//!     offset, now one multiply when the outer axes collapse; `1/τ` once per call): the
//!     full-call overhead over bare rows went from ~0.036 to ~0.01 ns/element;
//!   - a max+min pass (the min rides along in the load-bound max loop) lets the exp kernel
//!     skip its clamp and use `vscalefps` (two of ~16 vector instructions), and the float32
//!     partial sums now cover 8 vectors before widening to f64: exp-store-sum 0.382 →
//!     0.364 ns/element;
//!   - numpy's large arrays start 16 bytes past a cache line, so every 64-byte access was a
//!     split: a masked head step aligns the main loops (max pass 0.056 → 0.034, exp pass
//!     ~5%, whole row 0.31 → 0.29 ns/element).
//! * Outputs at least as large as the last-level cache (CPUID) are written with
//!   non-temporal stores from an L1 scratch row (`softmax.rs`): read + write per element
//!   instead of read + read-for-ownership + write, as glibc's `memcpy` does (and so the
//!   `np.copyto` reference) at such sizes. 512 MiB, one thread: 124 → 113 ms in the one
//!   quiet-ish A/B; the machine was too loaded to measure the two-thread effect reliably.
//! * Tried and left: the exps into an L1 scratch row and a separate scale-into-output pass for
//!   cached outputs (no better: the output's RFO moves, it does not go away); `vscalefps` for
//!   the clamped kernel too (gives subnormals for n = −127 where scalar gives 0).
//!   `perf` (cpu-clock only, no hardware counters in this VM) and in-process A/B with
//!   `set_simd_level` were the tools; with the second vCPU busy, thread CPU time
//!   (`time.thread_time`) of single calls, min over many, was the only stable measure.
//!
//! Older notes (2-core AMD EPYC VM, AVX2 only; kept for the AVX2 path, which is unchanged):
//! * softmax was compute-bound (~1.3–1.5 ns/element with the rows in L1). The vector `exp`
//!   now rounds with the 1.5·2²³ (+bias) trick — one FMA + one subtract instead of
//!   mul + round + convert + add, and the shifted bits of the FMA result are 2ⁿ directly —
//!   the temperature-1 case skips its multiply (const-generic kernel), and the f64 widening
//!   of the running sum happens once per 32 elements (four exps summed in f32 first) instead
//!   of once per 8. Measured side by side in one run: 4096×1024 0.40× → 0.53× of
//!   `np.copyto`, 64×65536 0.52× → 0.54×, 8×262144 0.27× → 0.34× (noisy ±15%).
//! * Software prefetch 4 KiB ahead in the exp-store-sum loop: the max pass was ~27% of the
//!   profile, stalled on the first touch of each row. Best-of-7, base vs new, alternating
//!   processes: 4096×1024 4.5 → 2.9 ms, 64×65536 4.3 → 3.3 ms, 8×262144 2.0 → 1.55 ms.
//! * Tried/considered and left: a degree-5 polynomial (saves one FMA of ~13 but is ~1.3 ulp
//!   before rounding, too close to the 2-ulp scalar/SIMD agreement tests); folding
//!   `(x − m)·c` into one FMA (`x·c − m·c` loses accuracy when |m·c| is large).
//! * Two threads are no faster than one on the 256 MiB array because this VM's second core
//!   is busy with other jobs (np.copyto alone gets ~7 GB/s); rows are split into
//!   `TASK_ELEMENTS`-sized tasks across the pool (layout.rs `run_rows`).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

use crate::simd::{level, Level};

const LOG2E: f64 = std::f64::consts::LOG2_E;

/// float32 arguments below this give exactly 0 (`exp(−87) ≈ 1.6e−38`, just above the smallest
/// normal number): at and above it `2^k` (k = ⌊n/16⌋ ≥ −126) is normal, so the table kernel
/// can build it in the exponent bits.
const F32_FLUSH: f32 = -87.0;
/// 16/ln 2: `n = round(x·16/ln 2)`, `x = n·ln2/16 + r` with `|r| ≤ ln2/32`.
const F32_L16: f32 = 23.083_12;
// ln2/16 split so that n·HI is exact for |n| < 2^11 even without FMA (HI has 13 significant bits).
const F32_LN2_16_HI: f32 = 0.043_319_702;
const F32_LN2_16_LO: f32 = 1.996_636_5e-6;
/// 1.5·2²³: adding it to `x·16/ln 2` rounds to an integer kept in the low mantissa bits.
const F32_MAGIC: f32 = 12_582_912.0;
/// `exp(r) − 1 ≈ r + Q0·r² + Q1·r³` on `|r| ≤ ln2/32`, fitted here for minimum relative
/// error (1.7e−9, a fiftieth of an ulp).
const F32_Q: [f32; 2] = [0.500_016_5, 0.166_667_22];
/// Bit patterns of `fl(2^(j/16))` minus `j << 19`: adding `n << 19` (n = 16k + j) gives the
/// bits of `2^k·fl(2^(j/16))` (see `exp_neg_f32`).
const F32_TAB: [u32; 16] = [
    0x3f80_0000,
    0x3f7d_aac3,
    0x3f7b_95c2,
    0x3f79_c3d3,
    0x3f78_37f0,
    0x3f76_f532,
    0x3f75_fed7,
    0x3f75_583f,
    0x3f75_04f3,
    0x3f75_08a4,
    0x3f75_672a,
    0x3f76_248c,
    0x3f77_44fd,
    0x3f78_ccdf,
    0x3f7a_c0c7,
    0x3f7d_257d,
];
/// `2^(j/16)/fl(2^(j/16)) − 1`: the table's rounding error, added into the polynomial so the
/// result is as accurate as an exactly represented table.
const F32_TAB_D: [f32; 16] = [
    0.0,
    4.628_547e-8,
    -1.199_215_7e-8,
    4.729_782_4e-8,
    3.193_418e-8,
    3.621_057_3e-8,
    -3.099_072e-8,
    -7.475_213e-9,
    1.711_427e-8,
    -3.047_683_4e-8,
    5.233_334e-9,
    6.107_592e-9,
    -1.471_960_5e-8,
    -5.258_795e-9,
    -6.128_26e-9,
    5.140_609_3e-9,
];
// The AVX2 kernel's polynomial (the previous algorithm, kept there: a 16-entry table costs two
// permutes and a blend at 8 lanes). ln 2 split so that n·HI is exact for |n| < 2^12.
const F32_LN2_HI: f32 = 0.693_359_4;
const F32_LN2_LO: f32 = -2.121_944_4e-4;
/// 1.5·2²³ + 127: adding it to `x·log2 e` rounds to an integer kept in the low mantissa bits.
const F32_ROUND_MAGIC: f32 = 12_583_039.0;
const F32_C: [f32; 5] = [
    0.499_999_93,
    0.166_665_2,
    0.041_668_387,
    0.008_368_71,
    0.001_381_462_5,
];

const F64_LO: f64 = -708.396_418_532_264_1; // ln(2^-1022)
const F64_LN2_HI: f64 = 0.693_147_180_369_123_8; // 0x3FE62E42FEE00000
const F64_LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
/// 1/k! for k = 2..=13.
const F64_C: [f64; 12] = [
    0.5,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
    1.0 / 40320.0,
    1.0 / 362_880.0,
    1.0 / 3_628_800.0,
    1.0 / 39_916_800.0,
    1.0 / 479_001_600.0,
    1.0 / 6_227_020_800.0,
];

/// Portable float32 `exp` for `x ≤ 0` (same algorithm and constants as the AVX-512 kernel):
/// `x = (16k + j)·ln2/16 + r`, `exp(x) = 2^k·2^(j/16)·(1 + q(r))` with a 16-entry table and a
/// cubic. Without FMA here, so it agrees with the vector kernels to about an ulp, not bit
/// for bit.
#[inline(always)]
pub fn exp_neg_f32(x: f32) -> f32 {
    if x < F32_FLUSH {
        return 0.0;
    }
    // NaN: `n as i32` is 0, so the table index is valid, and NaN reaches the result through r.
    let n = (x * F32_L16).round_ties_even();
    let r = (x - n * F32_LN2_16_HI) - n * F32_LN2_16_LO;
    let ni = n as i32;
    let j = (ni & 15) as usize;
    // n ≥ −2008 here, so k = ⌊n/16⌋ ≥ −126 and the bits form a normal 2^k·fl(2^(j/16)).
    let s = f32::from_bits(F32_TAB[j].wrapping_add((ni as u32) << 19));
    let q = ((F32_Q[1] * r + F32_Q[0]) * r + 1.0) * r + F32_TAB_D[j];
    s * q + s
}

/// Portable `exp(x − M·ln2/16)` for a grid point `M` (`mg`, an integer in f64) with the
/// argument ≥ −86.5 and `|x| ≤ 2048` (see `grid_point`): [`exp_neg_f32`]'s table and cubic on
/// `n = N − M`, `N = round(x·16/ln 2)`, with `r = x − N·ln2/16` reduced in f64 (no FMA here,
/// and `N` can exceed the 11 bits that keep `N·ln2/16` exact in float32).
#[inline(always)]
pub fn exp_grid_f32(x: f32, mg: f64) -> f32 {
    let xd = x as f64;
    let nf = (xd / LN2_16_F64).round_ties_even();
    let r = (xd - nf * LN2_16_F64) as f32;
    let ni = (nf - mg) as i32;
    let j = (ni & 15) as usize;
    let s = f32::from_bits(F32_TAB[j].wrapping_add((ni as u32) << 19));
    let q = ((F32_Q[1] * r + F32_Q[0]) * r + 1.0) * r + F32_TAB_D[j];
    s * q + s
}

/// Portable float64 `exp` for `x ≤ 0`.
#[inline(always)]
pub fn exp_neg_f64(x: f64) -> f64 {
    if x < F64_LO {
        return 0.0;
    }
    let n = (x * LOG2E).round_ties_even();
    let r = (x - n * F64_LN2_HI) - n * F64_LN2_LO;
    let mut p = F64_C[11];
    for &c in F64_C[..11].iter().rev() {
        p = p * r + c;
    }
    p = p * r + 1.0;
    p = p * r + 1.0;
    let scale = f64::from_bits((((n as i64) + 1023) as u64) << 52);
    p * scale
}

macro_rules! scalar_kernels {
    ($t:ty, $exp:ident, $max:ident, $ess:ident, $es:ident) => {
        fn $max(x: &[$t]) -> $t {
            let mut acc = [<$t>::NEG_INFINITY; 8];
            let mut ch = x.chunks_exact(8);
            for c in &mut ch {
                for k in 0..8 {
                    acc[k] = if c[k] > acc[k] { c[k] } else { acc[k] };
                }
            }
            let mut m = <$t>::NEG_INFINITY;
            for &v in acc.iter().chain(ch.remainder()) {
                if v > m {
                    m = v;
                }
            }
            m
        }

        fn $ess(x: &[$t], m: $t, c: $t, out: &mut [$t]) -> f64 {
            let mut acc = [0.0f64; 4];
            for (xs, os) in x.chunks(4).zip(out.chunks_mut(4)) {
                for k in 0..xs.len() {
                    let e = $exp((xs[k] - m) * c);
                    os[k] = e;
                    acc[k] += e as f64;
                }
            }
            acc.iter().sum()
        }

        fn $es(x: &[$t], m: $t, c: $t) -> f64 {
            let mut acc = [0.0f64; 4];
            for xs in x.chunks(4) {
                for k in 0..xs.len() {
                    acc[k] += $exp((xs[k] - m) * c) as f64;
                }
            }
            acc.iter().sum()
        }
    };
}

scalar_kernels!(
    f32,
    exp_neg_f32,
    max_f32_scalar,
    ess_f32_scalar,
    es_f32_scalar
);
scalar_kernels!(
    f64,
    exp_neg_f64,
    max_f64_scalar,
    ess_f64_scalar,
    es_f64_scalar
);

/// The vector kernel family to use now (run-time detection, capped by `PROBCRAFT_SIMD`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Scalar,
    Avx2,
    Avx512,
}

#[inline(always)]
fn path() -> Path {
    if !cfg!(target_arch = "x86_64") {
        return Path::Scalar;
    }
    match level() {
        Level::Avx512 => Path::Avx512,
        Level::Avx2 => Path::Avx2,
        _ => Path::Scalar,
    }
}

/// Largest element of `x` (−∞ when empty).
pub fn max_f32(x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    match path() {
        // SAFETY: `Level::Avx512` is only reported after run-time detection of AVX-512F, AVX2
        // and FMA; `Level::Avx2` after AVX2 and FMA.
        Path::Avx512 => return unsafe { avx512::max_f32(x) },
        // SAFETY: as above.
        Path::Avx2 => return unsafe { avx2::max_f32(x) },
        Path::Scalar => {}
    }
    max_f32_scalar(x)
}

pub fn max_f64(x: &[f64]) -> f64 {
    #[cfg(target_arch = "x86_64")]
    match path() {
        // SAFETY: the features were detected at run time (see `max_f32`).
        Path::Avx512 => return unsafe { avx512::max_f64(x) },
        // SAFETY: as above.
        Path::Avx2 => return unsafe { avx2::max_f64(x) },
        Path::Scalar => {}
    }
    max_f64_scalar(x)
}

/// Arguments of `exp` at or above this need no clamp: they round to `n ≥ −126`, so `2ⁿ` is a
/// normal number (see [`max_min_f32`]).
pub const EXP_NO_CLAMP: f32 = -87.0;

/// The largest element of `x` (−∞ when empty) and a lower bound on the smallest: at the
/// AVX-512 level the smallest itself when it is negative and 0 when no element is (one pass
/// finds both for about the cost of one), elsewhere the smallest (+∞ when empty; NaN is
/// skipped by both). With the bound the exponential kernels can skip their clamp
/// ([`exp_store_sum_f32_above`]) and use a grid reference ([`exp_store_sum_f32_ref`]).
pub fn max_min_f32(x: &[f32]) -> (f32, f32) {
    #[cfg(target_arch = "x86_64")]
    match path() {
        // SAFETY: the features were detected at run time (see `max_f32`).
        Path::Avx512 => return unsafe { avx512::max_min_f32(x) },
        // SAFETY: as above.
        Path::Avx2 => return unsafe { avx2::max_min_f32(x) },
        Path::Scalar => {}
    }
    let lo = x
        .iter()
        .fold(f32::INFINITY, |a, &v| if v < a { v } else { a });
    (max_f32(x), lo)
}

/// Whether arguments `(x − m)·c` with `x ≥ lo` may fall below [`EXP_NO_CLAMP`] (or `lo` is
/// NaN). The computed argument is monotone in `x`, so checking `lo` covers every element.
#[inline]
fn needs_clamp(lo: f32, m: f32, c: f32) -> bool {
    let a = (lo - m) * c;
    a.is_nan() || a < EXP_NO_CLAMP
}

/// [`exp_store_sum_f32`] given `lo ≤` every element of `x`: when `(lo − m)·c ≥`
/// [`EXP_NO_CLAMP`] the AVX-512 kernel runs without its clamp (same results, fewer
/// instructions).
pub fn exp_store_sum_f32_above(x: &[f32], m: f32, c: f32, lo: f32, out: &mut [f32]) -> f64 {
    assert_eq!(x.len(), out.len());
    #[cfg(target_arch = "x86_64")]
    if path() == Path::Avx512 {
        let clamp = needs_clamp(lo, m, c);
        // SAFETY: the features were detected at run time (see `max_f32`); lengths are equal;
        // without the clamp every argument is ≥ EXP_NO_CLAMP (monotone in x, x ≥ lo).
        return unsafe { avx512::ess_f32(x, m, c, out, clamp) };
    }
    exp_store_sum_f32(x, m, c, out)
}

/// [`exp_sum_f32`] given `lo ≤` every element of `x` (see [`exp_store_sum_f32_above`]).
pub fn exp_sum_f32_above(x: &[f32], m: f32, c: f32, lo: f32) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if path() == Path::Avx512 {
        let clamp = needs_clamp(lo, m, c);
        // SAFETY: as in `exp_store_sum_f32_above`.
        return unsafe { avx512::es_f32(x, m, c, clamp) };
    }
    exp_sum_f32(x, m, c)
}

/// Grid references need `|x| ≤` this (see [`grid_point`]).
const GRID_MAX_ABS: f32 = 2048.0;

/// `ln 2/16` in f64: the spacing of the grid references.
const LN2_16_F64: f64 = std::f64::consts::LN_2 / 16.0;

/// The grid point `M` (a reference `M·ln2/16` within `ln2/32` of `m`) for a block with maximum
/// `m` and lower bound `lo`, when the grid kernels apply: temperature 1, `|m|` and `|lo|` at
/// most [`GRID_MAX_ABS`] (so `|N| < 2^16` and the reduction keeps its accuracy), and every
/// argument `x − M·ln2/16 ≥ −86.5` (so `2^k` is normal without a clamp).
#[inline]
fn grid_point(m: f32, c: f32, lo: f32) -> Option<f64> {
    if c != 1.0 || !(m.abs() <= GRID_MAX_ABS && lo.abs() <= GRID_MAX_ABS) {
        return None;
    }
    let mg = (m as f64 / LN2_16_F64).round_ties_even();
    if (lo as f64) - mg * LN2_16_F64 < -86.5 {
        return None;
    }
    Some(mg)
}

/// `out = exp(x − ref)` and `Σ out` (f64) for a reference `ref` the kernel picks, returned as
/// `(Σ, ref, next)`; `m` is the block's maximum and `lo ≤` every element. Softmax only needs
/// one common reference per block: with temperature 1 and [`grid_point`]'s bounds `ref` is a
/// grid point near `m` — `M·ln2/16` (AVX-512 and scalar, the 16-entry table kernels) or
/// `K·ln 2` (AVX2, `2ⁿ·p(r)`), within half a step — so `x − ref` folds into the range
/// reduction (`n = round(x·16/ln2) − M` in one FMA, and `r = x − N·ln2/16` is reduced from `x`
/// itself, so the rounding of `x − m` is gone as well, up to ~60 ulp of the terms far below
/// the maximum); the terms are then at most `exp(ln2/32)` (`√2` for AVX2). Elsewhere
/// `ref = m` and the terms are those of [`exp_store_sum_f32_above`]. At the AVX-512 level,
/// when `next` (the following block) is as long as `x`, its [`max_min_f32`] is found in the
/// same loop and returned as `next`.
pub fn exp_store_sum_f32_ref(
    x: &[f32],
    m: f32,
    c: f32,
    lo: f32,
    out: &mut [f32],
    next: Option<&[f32]>,
) -> (f64, f64, Option<(f32, f32)>) {
    assert_eq!(x.len(), out.len());
    match (path(), grid_point(m, c, lo)) {
        #[cfg(target_arch = "x86_64")]
        (Path::Avx512, Some(mg)) => {
            if let Some(nx) = next.filter(|nx| nx.len() == x.len()) {
                // SAFETY: the features were detected at run time (see `max_f32`); lengths are
                // equal; `grid_point` checked the kernel's preconditions.
                let (s, h, l) = unsafe { avx512::ess_grid_mm_f32(x, m, mg as f32, out, nx) };
                return (s, mg * LN2_16_F64, Some((h, l)));
            }
            // SAFETY: as above.
            let s = unsafe { avx512::ess_grid_f32(x, m, mg as f32, out) };
            (s, mg * LN2_16_F64, None)
        }
        #[cfg(target_arch = "x86_64")]
        (Path::Avx2, Some(_)) => {
            let k = (m as f64 * LOG2E).round_ties_even();
            // SAFETY: as above; `grid_point`'s bounds hold for `K·ln 2` too (within ln2/2 of
            // `m`: arguments ≥ −86.5 − ln2/2, so `2ⁿ` stays normal).
            let s = unsafe { avx2::ess_grid_f32(x, k, out) };
            (s, k * std::f64::consts::LN_2, None)
        }
        (Path::Scalar, Some(mg)) => {
            let mut acc = [0.0f64; 4];
            for (xs, os) in x.chunks(4).zip(out.chunks_mut(4)) {
                for k in 0..xs.len() {
                    let e = exp_grid_f32(xs[k], mg);
                    os[k] = e;
                    acc[k] += e as f64;
                }
            }
            (acc.iter().sum(), mg * LN2_16_F64, None)
        }
        _ => (exp_store_sum_f32_above(x, m, c, lo, out), m as f64, None),
    }
}

/// `x[i] *= f` (softmax's last pass): at the AVX-512 level with aligned stores (see
/// `avx512::head_f32`), elsewhere [`kern::scale`](super::kern::scale).
pub fn scale_f32(x: &mut [f32], f: f32) {
    #[cfg(target_arch = "x86_64")]
    if path() == Path::Avx512 {
        // SAFETY: the features were detected at run time (see `max_f32`).
        return unsafe { avx512::scale_f32(x, f) };
    }
    super::kern::scale(x, f)
}

/// Size of the largest (last-level) data cache in bytes, from CPUID (leaf 4 on Intel,
/// 0x8000001D on AMD); `None` when the CPU does not say.
#[cfg(target_arch = "x86_64")]
// `__cpuid` needs `unsafe` on older compilers within the MSRV range, not on newer ones.
#[allow(unused_unsafe)]
fn detect_llc_bytes() -> Option<usize> {
    let mut best = None;
    for leaf in [4u32, 0x8000_001D] {
        // SAFETY: CPUID is available on every x86-64 CPU; an unsupported leaf returns zeros
        // (checked against the maximum leaf first).
        let max = unsafe { __cpuid(leaf & 0x8000_0000) }.eax;
        if max < leaf {
            continue;
        }
        for sub in 0..16 {
            // SAFETY: as above.
            let r = unsafe { __cpuid_count(leaf, sub) };
            let kind = r.eax & 0x1f;
            if kind == 0 {
                break;
            }
            if kind == 2 {
                continue; // instruction cache
            }
            let ways = ((r.ebx >> 22) & 0x3ff) as usize + 1;
            let parts = ((r.ebx >> 12) & 0x3ff) as usize + 1;
            let line = (r.ebx & 0xfff) as usize + 1;
            let sets = r.ecx as usize + 1;
            let size = ways * parts * line * sets;
            best = Some(best.map_or(size, |b: usize| b.max(size)));
        }
        if best.is_some() {
            break;
        }
    }
    best
}

/// Whether an output of `bytes` bytes should be written with non-temporal stores: only at a
/// SIMD level, and only when it is at least as large as the last-level cache, where keeping
/// it cached is impossible anyway (glibc's `memcpy` switches at a fraction of that size).
pub fn stream_output(bytes: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static LLC: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
        if path() == Path::Scalar {
            return false;
        }
        match *LLC.get_or_init(detect_llc_bytes) {
            Some(llc) => bytes >= llc.max(1 << 20),
            None => false,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = bytes;
        false
    }
}

/// `dst[i] = src[i]·f` (`f` rounded to the element type first, as the in-place scale does)
/// with non-temporal stores where the SIMD level allows; call [`streaming_done`] after the
/// last of a batch.
pub fn scale_into_streaming<T: super::Float>(src: &[T], f: f64, dst: &mut [T]) {
    assert_eq!(src.len(), dst.len());
    #[cfg(target_arch = "x86_64")]
    if path() != Path::Scalar {
        use super::kern::{cast, cast_mut};
        let avx512 = path() == Path::Avx512;
        if let (Some(a), Some(o)) = (cast::<T, f32>(src), cast_mut::<T, f32>(dst)) {
            // SAFETY: the level was detected at run time (see `max_f32`); equal lengths.
            unsafe {
                if avx512 {
                    avx512::scale_into_stream_f32(a, f as f32, o)
                } else {
                    avx2::scale_into_stream_f32(a, f as f32, o)
                }
            }
            return;
        }
        if let (Some(a), Some(o)) = (cast::<T, f64>(src), cast_mut::<T, f64>(dst)) {
            // SAFETY: as above.
            unsafe {
                if avx512 {
                    avx512::scale_into_stream_f64(a, f, o)
                } else {
                    avx2::scale_into_stream_f64(a, f, o)
                }
            }
            return;
        }
    }
    let f = T::from_f64(f);
    for (o, &v) in dst.iter_mut().zip(src) {
        *o = v * f;
    }
}

/// Orders the non-temporal stores of [`scale_into_streaming`] before any later store (they
/// are weakly ordered): what another thread sees after synchronising with this one is then
/// complete.
#[inline]
pub fn streaming_done() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SFENCE is part of SSE, which every x86-64 CPU has.
    unsafe {
        _mm_sfence()
    };
}

/// `out = exp((x − m)·c)`, returns `Σ out` (f64). `out.len()` must equal `x.len()`.
pub fn exp_store_sum_f32(x: &[f32], m: f32, c: f32, out: &mut [f32]) -> f64 {
    assert_eq!(x.len(), out.len());
    #[cfg(target_arch = "x86_64")]
    match path() {
        // SAFETY: the features were detected at run time (see `max_f32`); lengths are equal.
        Path::Avx512 => return unsafe { avx512::ess_f32(x, m, c, out, true) },
        // SAFETY: as above.
        Path::Avx2 => return unsafe { avx2::ess_f32(x, m, c, out) },
        Path::Scalar => {}
    }
    ess_f32_scalar(x, m, c, out)
}

pub fn exp_store_sum_f64(x: &[f64], m: f64, c: f64, out: &mut [f64]) -> f64 {
    assert_eq!(x.len(), out.len());
    #[cfg(target_arch = "x86_64")]
    match path() {
        // SAFETY: the features were detected at run time (see `max_f32`); lengths are equal.
        Path::Avx512 => return unsafe { avx512::ess_f64(x, m, c, out) },
        // SAFETY: as above.
        Path::Avx2 => return unsafe { avx2::ess_f64(x, m, c, out) },
        Path::Scalar => {}
    }
    ess_f64_scalar(x, m, c, out)
}

/// `Σ exp((x − m)·c)` in f64.
pub fn exp_sum_f32(x: &[f32], m: f32, c: f32) -> f64 {
    #[cfg(target_arch = "x86_64")]
    match path() {
        // SAFETY: the features were detected at run time (see `max_f32`).
        Path::Avx512 => return unsafe { avx512::es_f32(x, m, c, true) },
        // SAFETY: as above.
        Path::Avx2 => return unsafe { avx2::es_f32(x, m, c) },
        Path::Scalar => {}
    }
    es_f32_scalar(x, m, c)
}

pub fn exp_sum_f64(x: &[f64], m: f64, c: f64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    match path() {
        // SAFETY: the features were detected at run time (see `max_f32`).
        Path::Avx512 => return unsafe { avx512::es_f64(x, m, c) },
        // SAFETY: as above.
        Path::Avx2 => return unsafe { avx2::es_f64(x, m, c) },
        Path::Scalar => {}
    }
    es_f64_scalar(x, m, c)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;

    /// The degree-6 polynomial on `|r| ≤ ln2/2` (not the table kernel: 8 lanes would need two
    /// permutes and a blend per table). Arguments below `F32_FLUSH` give exactly 0.
    #[inline(always)]
    unsafe fn exp_ps(x: __m256) -> __m256 {
        // max(lo, x) returns its second operand when either is NaN, so NaN survives.
        let xc = _mm256_max_ps(_mm256_set1_ps(F32_FLUSH), x);
        // Rounding by adding 1.5·2²³ (+127, the exponent bias): the FMA leaves n + 127 in the
        // low mantissa bits, so one FMA and one subtraction replace round + convert + add, and
        // the shifted bit pattern is 2ⁿ directly (n + 127 ∈ [0, 127] after the clamp).
        let magic = _mm256_set1_ps(F32_ROUND_MAGIC);
        let t = _mm256_fmadd_ps(xc, _mm256_set1_ps(LOG2E as f32), magic);
        // Arguments below F32_FLUSH give 0, as in the scalar and AVX-512 kernels (the clamp
        // alone would leave nonzero results down to about −87.3).
        let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(F32_FLUSH));
        _mm256_andnot_ps(under, reduce_poly_scale(xc, t, magic))
    }

    #[inline(always)]
    unsafe fn exp_pd(x: __m256d) -> __m256d {
        let lo = _mm256_set1_pd(F64_LO);
        let xc = _mm256_max_pd(lo, x);
        let n = _mm256_round_pd::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_pd(xc, _mm256_set1_pd(LOG2E)),
        );
        let mut r = _mm256_fnmadd_pd(n, _mm256_set1_pd(F64_LN2_HI), xc);
        r = _mm256_fnmadd_pd(n, _mm256_set1_pd(F64_LN2_LO), r);
        let mut p = _mm256_set1_pd(F64_C[11]);
        for &c in F64_C[..11].iter().rev() {
            p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(c));
        }
        p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
        p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
        let ni = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(n));
        let scale = _mm256_castsi256_pd(_mm256_slli_epi64::<52>(_mm256_add_epi64(
            ni,
            _mm256_set1_epi64x(1023),
        )));
        let res = _mm256_mul_pd(p, scale);
        let under = _mm256_cmp_pd::<_CMP_LT_OQ>(x, lo);
        _mm256_andnot_pd(under, res)
    }

    /// Adds the 8 float32 lanes of `e` into 4 float64 lanes (sums stay exact to f64 rounding,
    /// so forced-scalar and SIMD runs agree and long rows lose nothing to float32 sums).
    #[inline(always)]
    unsafe fn acc_ps(acc: __m256d, e: __m256) -> __m256d {
        let lo = _mm256_cvtps_pd(_mm256_castps256_ps128(e));
        let hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(e));
        _mm256_add_pd(acc, _mm256_add_pd(lo, hi))
    }

    #[inline(always)]
    unsafe fn hsum_pd(v: __m256d) -> f64 {
        let mut a = [0f64; 4];
        _mm256_storeu_pd(a.as_mut_ptr(), v);
        a.iter().sum()
    }

    /// Maximum and minimum (`vmaxps`/`vminps` keep their second operand on NaN, so a NaN may be
    /// dropped: the bound serves finite blocks only, and NaN reaches the sum anyway).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn max_min_f32(x: &[f32]) -> (f32, f32) {
        let n = x.len();
        let p = x.as_ptr();
        let mut a0 = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut a1 = a0;
        let mut b0 = _mm256_set1_ps(f32::INFINITY);
        let mut b1 = b0;
        let mut i = 0;
        while i + 16 <= n {
            let (v0, v1) = (_mm256_loadu_ps(p.add(i)), _mm256_loadu_ps(p.add(i + 8)));
            a0 = _mm256_max_ps(a0, v0);
            a1 = _mm256_max_ps(a1, v1);
            b0 = _mm256_min_ps(b0, v0);
            b1 = _mm256_min_ps(b1, v1);
            i += 16;
        }
        let mut a = [0f32; 8];
        let mut b = [0f32; 8];
        _mm256_storeu_ps(a.as_mut_ptr(), _mm256_max_ps(a0, a1));
        _mm256_storeu_ps(b.as_mut_ptr(), _mm256_min_ps(b0, b1));
        let (mut m, mut lo) = (f32::NEG_INFINITY, f32::INFINITY);
        for &v in a.iter().chain(&x[i..]) {
            if v > m {
                m = v;
            }
        }
        for &v in b.iter().chain(&x[i..]) {
            if v < lo {
                lo = v;
            }
        }
        (m, lo)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn max_f32(x: &[f32]) -> f32 {
        let n = x.len();
        let p = x.as_ptr();
        let mut a0 = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut a1 = a0;
        let mut a2 = a0;
        let mut a3 = a0;
        let mut i = 0;
        while i + 32 <= n {
            a0 = _mm256_max_ps(a0, _mm256_loadu_ps(p.add(i)));
            a1 = _mm256_max_ps(a1, _mm256_loadu_ps(p.add(i + 8)));
            a2 = _mm256_max_ps(a2, _mm256_loadu_ps(p.add(i + 16)));
            a3 = _mm256_max_ps(a3, _mm256_loadu_ps(p.add(i + 24)));
            i += 32;
        }
        while i + 8 <= n {
            a0 = _mm256_max_ps(a0, _mm256_loadu_ps(p.add(i)));
            i += 8;
        }
        let v = _mm256_max_ps(_mm256_max_ps(a0, a1), _mm256_max_ps(a2, a3));
        let mut a = [0f32; 8];
        _mm256_storeu_ps(a.as_mut_ptr(), v);
        let mut m = f32::NEG_INFINITY;
        for &v in a.iter().chain(&x[i..]) {
            if v > m {
                m = v;
            }
        }
        m
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn max_f64(x: &[f64]) -> f64 {
        let n = x.len();
        let p = x.as_ptr();
        let mut a0 = _mm256_set1_pd(f64::NEG_INFINITY);
        let mut a1 = a0;
        let mut a2 = a0;
        let mut a3 = a0;
        let mut i = 0;
        while i + 16 <= n {
            a0 = _mm256_max_pd(a0, _mm256_loadu_pd(p.add(i)));
            a1 = _mm256_max_pd(a1, _mm256_loadu_pd(p.add(i + 4)));
            a2 = _mm256_max_pd(a2, _mm256_loadu_pd(p.add(i + 8)));
            a3 = _mm256_max_pd(a3, _mm256_loadu_pd(p.add(i + 12)));
            i += 16;
        }
        while i + 4 <= n {
            a0 = _mm256_max_pd(a0, _mm256_loadu_pd(p.add(i)));
            i += 4;
        }
        let v = _mm256_max_pd(_mm256_max_pd(a0, a1), _mm256_max_pd(a2, a3));
        let mut a = [0f64; 4];
        _mm256_storeu_pd(a.as_mut_ptr(), v);
        let mut m = f64::NEG_INFINITY;
        for &v in a.iter().chain(&x[i..]) {
            if v > m {
                m = v;
            }
        }
        m
    }

    /// `dst = src·f` with `vmovntps` once `dst` is 32-byte aligned (plain stores before and
    /// after, and throughout when `dst` is not even 4-byte aligned).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn scale_into_stream_f32(src: &[f32], f: f32, dst: &mut [f32]) {
        let n = src.len();
        let (p, q) = (src.as_ptr(), dst.as_mut_ptr());
        let mut i = 0;
        if (q as usize) % 4 == 0 {
            while i < n && (q.add(i) as usize) % 32 != 0 {
                *q.add(i) = *p.add(i) * f;
                i += 1;
            }
            let vf = _mm256_set1_ps(f);
            while i + 8 <= n {
                _mm256_stream_ps(q.add(i), _mm256_mul_ps(_mm256_loadu_ps(p.add(i)), vf));
                i += 8;
            }
        }
        while i < n {
            *q.add(i) = *p.add(i) * f;
            i += 1;
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn scale_into_stream_f64(src: &[f64], f: f64, dst: &mut [f64]) {
        let n = src.len();
        let (p, q) = (src.as_ptr(), dst.as_mut_ptr());
        let mut i = 0;
        if (q as usize) % 8 == 0 {
            while i < n && (q.add(i) as usize) % 32 != 0 {
                *q.add(i) = *p.add(i) * f;
                i += 1;
            }
            let vf = _mm256_set1_pd(f);
            while i + 4 <= n {
                _mm256_stream_pd(q.add(i), _mm256_mul_pd(_mm256_loadu_pd(p.add(i)), vf));
                i += 4;
            }
        }
        while i < n {
            *q.add(i) = *p.add(i) * f;
            i += 1;
        }
    }

    /// `(x − m)·c`, skipping the multiply when the temperature is 1 (the common case).
    #[inline(always)]
    unsafe fn arg_ps<const SCALED: bool>(x: __m256, vm: __m256, vc: __m256) -> __m256 {
        let d = _mm256_sub_ps(x, vm);
        if SCALED {
            _mm256_mul_ps(d, vc)
        } else {
            d
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn ess_f32(x: &[f32], m: f32, c: f32, out: &mut [f32]) -> f64 {
        if c == 1.0 {
            ess_f32_k::<false>(x, m, c, out)
        } else {
            ess_f32_k::<true>(x, m, c, out)
        }
    }

    #[inline(always)]
    unsafe fn ess_f32_k<const SCALED: bool>(x: &[f32], m: f32, c: f32, out: &mut [f32]) -> f64 {
        let n = x.len();
        let (p, q) = (x.as_ptr(), out.as_mut_ptr());
        let (vm, vc) = (_mm256_set1_ps(m), _mm256_set1_ps(c));
        let mut s0 = _mm256_setzero_pd();
        let mut i = 0;
        // Four vectors per step, summed in float32 before widening: a sum of four values ≤ 1
        // loses at most ~2 eps, and widening once per 32 elements instead of per 8 removes
        // most of the conversion work (it was a quarter of the loop).
        while i + 32 <= n {
            // The max pass that precedes this one stalls on memory; fetching 4 KiB ahead (the
            // next row of a 1024-wide array, or the next block of a long one) hides that.
            // Prefetches never fault, so running past the end of `x` is harmless.
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(i + 1024) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(i + 1040) as *const i8);
            let e0 = exp_ps(arg_ps::<SCALED>(_mm256_loadu_ps(p.add(i)), vm, vc));
            let e1 = exp_ps(arg_ps::<SCALED>(_mm256_loadu_ps(p.add(i + 8)), vm, vc));
            let e2 = exp_ps(arg_ps::<SCALED>(_mm256_loadu_ps(p.add(i + 16)), vm, vc));
            let e3 = exp_ps(arg_ps::<SCALED>(_mm256_loadu_ps(p.add(i + 24)), vm, vc));
            _mm256_storeu_ps(q.add(i), e0);
            _mm256_storeu_ps(q.add(i + 8), e1);
            _mm256_storeu_ps(q.add(i + 16), e2);
            _mm256_storeu_ps(q.add(i + 24), e3);
            s0 = acc_ps(
                s0,
                _mm256_add_ps(_mm256_add_ps(e0, e1), _mm256_add_ps(e2, e3)),
            );
            i += 32;
        }
        while i + 8 <= n {
            let e0 = exp_ps(arg_ps::<SCALED>(_mm256_loadu_ps(p.add(i)), vm, vc));
            _mm256_storeu_ps(q.add(i), e0);
            s0 = acc_ps(s0, e0);
            i += 8;
        }
        let mut s = hsum_pd(s0);
        for j in i..n {
            let e = exp_neg_f32((x[j] - m) * c);
            out[j] = e;
            s += e as f64;
        }
        s
    }

    /// `exp(x − K·ln 2)` for an integer `K` (`k`): `t = x·log2 e + (1.5·2²³ + 127 − K)` keeps
    /// `N − K + 127` in its low bits (`N = round(x·log2 e)`), `t − (1.5·2²³ + 127 − K) = N`, and
    /// `r = x − N·ln 2` is reduced from `x` itself. No clamp: the caller guarantees arguments
    /// ≥ −87 and `|x| ≤ 2048` (see `grid_point`).
    #[inline(always)]
    unsafe fn exp_grid_ps(x: __m256, kk: __m256) -> __m256 {
        let t = _mm256_fmadd_ps(x, _mm256_set1_ps(LOG2E as f32), kk);
        reduce_poly_scale(x, t, kk)
    }

    /// The shared tail of [`exp_ps`] and [`exp_grid_ps`]: with `t = x·log2 e + bias` holding
    /// the exponent in its low bits, `N = t − bias`, `r = x − N·ln 2` (two-part constant), the
    /// degree-6 polynomial in `r`, times `2^(bits of t)`.
    #[inline(always)]
    unsafe fn reduce_poly_scale(x: __m256, t: __m256, bias: __m256) -> __m256 {
        let n = _mm256_sub_ps(t, bias);
        let mut r = _mm256_fnmadd_ps(n, _mm256_set1_ps(F32_LN2_HI), x);
        r = _mm256_fnmadd_ps(n, _mm256_set1_ps(F32_LN2_LO), r);
        let mut p = _mm256_set1_ps(F32_C[4]);
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(F32_C[3]));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(F32_C[2]));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(F32_C[1]));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(F32_C[0]));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0));
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0));
        let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_castps_si256(t)));
        _mm256_mul_ps(p, scale)
    }

    /// `out = exp(x − k·ln 2)`, returns the sum (see `exp_grid_ps`; the scalar tail uses
    /// `exp_grid_f32` on the same reference).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn ess_grid_f32(x: &[f32], k: f64, out: &mut [f32]) -> f64 {
        let n = x.len();
        let (p, q) = (x.as_ptr(), out.as_mut_ptr());
        let kk = _mm256_set1_ps(F32_ROUND_MAGIC - k as f32);
        let mut s0 = _mm256_setzero_pd();
        let mut i = 0;
        while i + 32 <= n {
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(i + 1024) as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(i + 1040) as *const i8);
            let e0 = exp_grid_ps(_mm256_loadu_ps(p.add(i)), kk);
            let e1 = exp_grid_ps(_mm256_loadu_ps(p.add(i + 8)), kk);
            let e2 = exp_grid_ps(_mm256_loadu_ps(p.add(i + 16)), kk);
            let e3 = exp_grid_ps(_mm256_loadu_ps(p.add(i + 24)), kk);
            _mm256_storeu_ps(q.add(i), e0);
            _mm256_storeu_ps(q.add(i + 8), e1);
            _mm256_storeu_ps(q.add(i + 16), e2);
            _mm256_storeu_ps(q.add(i + 24), e3);
            s0 = acc_ps(
                s0,
                _mm256_add_ps(_mm256_add_ps(e0, e1), _mm256_add_ps(e2, e3)),
            );
            i += 32;
        }
        while i + 8 <= n {
            let e0 = exp_grid_ps(_mm256_loadu_ps(p.add(i)), kk);
            _mm256_storeu_ps(q.add(i), e0);
            s0 = acc_ps(s0, e0);
            i += 8;
        }
        let mut s = hsum_pd(s0);
        for j in i..n {
            let e = exp_grid_f32(x[j], 16.0 * k);
            out[j] = e;
            s += e as f64;
        }
        s
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn es_f32(x: &[f32], m: f32, c: f32) -> f64 {
        let n = x.len();
        let p = x.as_ptr();
        let (vm, vc) = (_mm256_set1_ps(m), _mm256_set1_ps(c));
        let mut s0 = _mm256_setzero_pd();
        let mut s1 = s0;
        let mut i = 0;
        while i + 64 <= n {
            let mut a0 = _mm256_setzero_ps();
            let mut a1 = a0;
            for j in (0..64).step_by(16) {
                a0 = _mm256_add_ps(
                    a0,
                    exp_ps(_mm256_mul_ps(
                        _mm256_sub_ps(_mm256_loadu_ps(p.add(i + j)), vm),
                        vc,
                    )),
                );
                a1 = _mm256_add_ps(
                    a1,
                    exp_ps(_mm256_mul_ps(
                        _mm256_sub_ps(_mm256_loadu_ps(p.add(i + j + 8)), vm),
                        vc,
                    )),
                );
            }
            s0 = acc_ps(s0, a0);
            s1 = acc_ps(s1, a1);
            i += 64;
        }
        while i + 16 <= n {
            let e0 = exp_ps(_mm256_mul_ps(
                _mm256_sub_ps(_mm256_loadu_ps(p.add(i)), vm),
                vc,
            ));
            let e1 = exp_ps(_mm256_mul_ps(
                _mm256_sub_ps(_mm256_loadu_ps(p.add(i + 8)), vm),
                vc,
            ));
            s0 = acc_ps(s0, e0);
            s1 = acc_ps(s1, e1);
            i += 16;
        }
        while i + 8 <= n {
            s0 = acc_ps(
                s0,
                exp_ps(_mm256_mul_ps(
                    _mm256_sub_ps(_mm256_loadu_ps(p.add(i)), vm),
                    vc,
                )),
            );
            i += 8;
        }
        let mut s = hsum_pd(_mm256_add_pd(s0, s1));
        for &v in &x[i..] {
            s += exp_neg_f32((v - m) * c) as f64;
        }
        s
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn ess_f64(x: &[f64], m: f64, c: f64, out: &mut [f64]) -> f64 {
        let n = x.len();
        let (p, q) = (x.as_ptr(), out.as_mut_ptr());
        let (vm, vc) = (_mm256_set1_pd(m), _mm256_set1_pd(c));
        let mut s0 = _mm256_setzero_pd();
        let mut s1 = s0;
        let mut i = 0;
        while i + 8 <= n {
            let e0 = exp_pd(_mm256_mul_pd(
                _mm256_sub_pd(_mm256_loadu_pd(p.add(i)), vm),
                vc,
            ));
            let e1 = exp_pd(_mm256_mul_pd(
                _mm256_sub_pd(_mm256_loadu_pd(p.add(i + 4)), vm),
                vc,
            ));
            _mm256_storeu_pd(q.add(i), e0);
            _mm256_storeu_pd(q.add(i + 4), e1);
            s0 = _mm256_add_pd(s0, e0);
            s1 = _mm256_add_pd(s1, e1);
            i += 8;
        }
        let mut s = hsum_pd(_mm256_add_pd(s0, s1));
        for j in i..n {
            let e = exp_neg_f64((x[j] - m) * c);
            out[j] = e;
            s += e;
        }
        s
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn es_f64(x: &[f64], m: f64, c: f64) -> f64 {
        let n = x.len();
        let p = x.as_ptr();
        let (vm, vc) = (_mm256_set1_pd(m), _mm256_set1_pd(c));
        let mut s0 = _mm256_setzero_pd();
        let mut s1 = s0;
        let mut i = 0;
        while i + 8 <= n {
            let e0 = exp_pd(_mm256_mul_pd(
                _mm256_sub_pd(_mm256_loadu_pd(p.add(i)), vm),
                vc,
            ));
            let e1 = exp_pd(_mm256_mul_pd(
                _mm256_sub_pd(_mm256_loadu_pd(p.add(i + 4)), vm),
                vc,
            ));
            s0 = _mm256_add_pd(s0, e0);
            s1 = _mm256_add_pd(s1, e1);
            i += 8;
        }
        let mut s = hsum_pd(_mm256_add_pd(s0, s1));
        for &v in &x[i..] {
            s += exp_neg_f64((v - m) * c);
        }
        s
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    //! The AVX2 kernels at 16 float32 / 8 float64 lanes, with masked tails instead of scalar
    //! ones (a masked load never faults on the lanes it leaves out). Only AVX-512F
    //! instructions are used: that is all `Level::Avx512` guarantees.
    use super::*;

    /// Lanes `0..rem` of a 16-lane mask (`rem < 16`).
    #[inline(always)]
    fn mask16(rem: usize) -> __mmask16 {
        ((1u32 << rem) - 1) as __mmask16
    }

    /// Elements before `p` reaches a 64-byte boundary (at most `n`). numpy's large arrays
    /// start 16 bytes past one, so without this every 64-byte access splits a cache line:
    /// a masked head step first makes the main loops' accesses aligned (measured 8% on the
    /// exp pass and 45% on the max pass with L2-resident rows).
    #[inline(always)]
    fn head_f32(p: *const f32, n: usize) -> usize {
        ((64 - (p as usize) % 64) % 64 / 4).min(n)
    }

    /// Lanes `0..rem` of an 8-lane mask (`rem < 8`).
    #[inline(always)]
    fn mask8(rem: usize) -> __mmask8 {
        ((1u32 << rem) - 1) as __mmask8
    }

    /// The table kernel of [`exp_neg_f32`] (same constants): `t = x·16/ln 2 + 1.5·2²³` keeps
    /// `n = 16k + j` in its low bits, so `vpermps` on `t`'s bits (which reads the low four)
    /// picks table entries, and `t << 19` added to the adjusted entry builds `2^k·2^(j/16)`.
    /// Per 16 elements: 7 FMA-unit operations (against 10 for the degree-6 polynomial and
    /// `vscalefps`, which is slow on Zen 5), 2 adds, 2 permutes and 2 integer operations.
    ///
    /// With `CLAMP = false` the caller guarantees `x ≥ EXP_NO_CLAMP` (or NaN): the clamp and
    /// the flush mask are skipped; the results are the same bits.
    #[inline(always)]
    unsafe fn exp_ps<const CLAMP: bool>(x: __m512) -> __m512 {
        let flush = _mm512_set1_ps(F32_FLUSH);
        // vmaxps returns its second operand when either is NaN, so NaN survives the clamp.
        let xc = if CLAMP { _mm512_max_ps(flush, x) } else { x };
        let magic = _mm512_set1_ps(F32_MAGIC);
        let t = _mm512_fmadd_ps(xc, _mm512_set1_ps(F32_L16), magic);
        let n = _mm512_sub_ps(t, magic);
        let mut r = _mm512_fnmadd_ps(n, _mm512_set1_ps(F32_LN2_16_HI), xc);
        r = _mm512_fnmadd_ps(n, _mm512_set1_ps(F32_LN2_16_LO), r);
        let ti = _mm512_castps_si512(t);
        let tab = _mm512_loadu_si512(F32_TAB.as_ptr() as *const _);
        let s = _mm512_castsi512_ps(_mm512_add_epi32(
            _mm512_permutexvar_epi32(ti, tab),
            _mm512_slli_epi32::<19>(ti),
        ));
        let d = _mm512_permutexvar_ps(ti, _mm512_loadu_ps(F32_TAB_D.as_ptr()));
        let mut q = _mm512_fmadd_ps(_mm512_set1_ps(F32_Q[1]), r, _mm512_set1_ps(F32_Q[0]));
        q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(1.0));
        q = _mm512_fmadd_ps(q, r, d);
        if CLAMP {
            // Lanes below the flush point (−∞ included) are 0; NaN compares "not less than".
            let keep = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(x, flush);
            _mm512_maskz_fmadd_ps(keep, s, q, s)
        } else {
            _mm512_fmadd_ps(s, q, s)
        }
    }

    /// [`exp_ps`] of `x − M·ln2/16` given `kk = 1.5·2²³ − M` (no clamp: the caller guarantees
    /// `x − M·ln2/16 ≥ −86.5`, `|x| ≤ GRID_MAX_ABS` or NaN). `t = x·16/ln2 + kk` keeps
    /// `n = N − M` in its low bits (`N = round(x·16/ln2)`), `t − kk = N` exactly, and
    /// `r = x − N·ln2/16` is reduced from `x` itself: one operation fewer than `exp_ps` of
    /// `x − m`, and no rounding of `x − m` (which cost up to ~60 ulp of the softmax terms far
    /// below the maximum, `|x − m|·2⁻²⁴` relative). The table's rounding error is not added
    /// back (one `vpermps` fewer, ~6% of this kernel): worst error 1.0 ulp against 0.57
    /// (against `exp(x − M·ln2/16)` in f64, 2·10⁷ arguments in [M·ln2/16 − 86, M·ln2/16]
    /// for 200 values of `M`; the tests check 1.1).
    #[inline(always)]
    unsafe fn exp_grid_ps(x: __m512, kk: __m512) -> __m512 {
        let t = _mm512_fmadd_ps(x, _mm512_set1_ps(F32_L16), kk);
        let nn = _mm512_sub_ps(t, kk);
        let mut r = _mm512_fnmadd_ps(nn, _mm512_set1_ps(F32_LN2_16_HI), x);
        r = _mm512_fnmadd_ps(nn, _mm512_set1_ps(F32_LN2_16_LO), r);
        let ti = _mm512_castps_si512(t);
        let tab = _mm512_loadu_si512(F32_TAB.as_ptr() as *const _);
        let s = _mm512_castsi512_ps(_mm512_add_epi32(
            _mm512_permutexvar_epi32(ti, tab),
            _mm512_slli_epi32::<19>(ti),
        ));
        let mut q = _mm512_fmadd_ps(_mm512_set1_ps(F32_Q[1]), r, _mm512_set1_ps(F32_Q[0]));
        q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(1.0));
        q = _mm512_mul_ps(q, r);
        _mm512_fmadd_ps(s, q, s)
    }

    #[inline(always)]
    unsafe fn exp_pd(x: __m512d) -> __m512d {
        let lo = _mm512_set1_pd(F64_LO);
        let xc = _mm512_max_pd(lo, x);
        let n = _mm512_roundscale_pd::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_pd(xc, _mm512_set1_pd(LOG2E)),
        );
        let mut r = _mm512_fnmadd_pd(n, _mm512_set1_pd(F64_LN2_HI), xc);
        r = _mm512_fnmadd_pd(n, _mm512_set1_pd(F64_LN2_LO), r);
        let mut p = _mm512_set1_pd(F64_C[11]);
        for &c in F64_C[..11].iter().rev() {
            p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(c));
        }
        p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0));
        p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0));
        // p·2ⁿ in one instruction; exact like the AVX2 multiply by the built 2ⁿ (n ≥ −1022
        // after the clamp, so 2ⁿ is normal and only the product can be subnormal). Lanes below
        // the clamp are zeroed; NaN compares "not less than" and keeps its (NaN) lane.
        let keep = _mm512_cmp_pd_mask::<_CMP_NLT_UQ>(x, lo);
        _mm512_maskz_scalef_pd(keep, p, n)
    }

    /// Adds the 16 float32 lanes of `e` into 8 float64 lanes (see `avx2::acc_ps`).
    #[inline(always)]
    unsafe fn acc_ps(acc: __m512d, e: __m512) -> __m512d {
        let lo = _mm512_cvtps_pd(_mm512_castps512_ps256(e));
        let hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
            _mm512_castps_pd(e),
        )));
        _mm512_add_pd(acc, _mm512_add_pd(lo, hi))
    }

    #[inline(always)]
    unsafe fn hsum_pd(v: __m512d) -> f64 {
        let mut a = [0f64; 8];
        _mm512_storeu_pd(a.as_mut_ptr(), v);
        a.iter().sum()
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn max_f32(x: &[f32]) -> f32 {
        let n = x.len();
        let p = x.as_ptr();
        let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
        let (mut a0, mut a1, mut a2, mut a3) = (ninf, ninf, ninf, ninf);
        let mut i = head_f32(p, n);
        if i > 0 {
            a3 = _mm512_mask_loadu_ps(ninf, mask16(i), p);
        }
        while i + 64 <= n {
            a0 = _mm512_max_ps(a0, _mm512_loadu_ps(p.add(i)));
            a1 = _mm512_max_ps(a1, _mm512_loadu_ps(p.add(i + 16)));
            a2 = _mm512_max_ps(a2, _mm512_loadu_ps(p.add(i + 32)));
            a3 = _mm512_max_ps(a3, _mm512_loadu_ps(p.add(i + 48)));
            i += 64;
        }
        while i + 16 <= n {
            a0 = _mm512_max_ps(a0, _mm512_loadu_ps(p.add(i)));
            i += 16;
        }
        if i < n {
            a1 = _mm512_max_ps(a1, _mm512_mask_loadu_ps(ninf, mask16(n - i), p.add(i)));
        }
        _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(a0, a1), _mm512_max_ps(a2, a3)))
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn max_min_f32(x: &[f32]) -> (f32, f32) {
        let n = x.len();
        let p = x.as_ptr();
        let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
        let (mut a0, mut a1, mut a2, mut a3) = (ninf, ninf, ninf, ninf);
        // The lower bound in the integer units (4 per cycle on Zen 5, against 2 for vminps,
        // which shared the float units with vmaxps): the unsigned maximum of the bit patterns
        // is the most negative element when there is one (sign bit set; −∞ above every finite
        // one), else some element ≥ 0, and then 0 is a bound. Lanes left out load 0.
        let (mut b0, mut b1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        let mut i = head_f32(p, n);
        if i > 0 {
            a3 = _mm512_mask_loadu_ps(ninf, mask16(i), p);
            b1 = _mm512_maskz_loadu_epi32(mask16(i), p as *const i32);
        }
        while i + 64 <= n {
            let v0 = _mm512_loadu_ps(p.add(i));
            let v1 = _mm512_loadu_ps(p.add(i + 16));
            let v2 = _mm512_loadu_ps(p.add(i + 32));
            let v3 = _mm512_loadu_ps(p.add(i + 48));
            a0 = _mm512_max_ps(a0, v0);
            a1 = _mm512_max_ps(a1, v1);
            a2 = _mm512_max_ps(a2, v2);
            a3 = _mm512_max_ps(a3, v3);
            // A NaN may be dropped from the bound (or make it NaN): the bound is only used for
            // finite blocks, and NaN propagates through the exponential either way.
            let (u0, u1) = (_mm512_castps_si512(v0), _mm512_castps_si512(v1));
            let (u2, u3) = (_mm512_castps_si512(v2), _mm512_castps_si512(v3));
            b0 = _mm512_max_epu32(b0, _mm512_max_epu32(u0, u1));
            b1 = _mm512_max_epu32(b1, _mm512_max_epu32(u2, u3));
            i += 64;
        }
        while i < n {
            let k = if n - i >= 16 { 0xffff } else { mask16(n - i) };
            let v = _mm512_maskz_loadu_ps(k, p.add(i));
            a0 = _mm512_mask_max_ps(a0, k, a0, v);
            b0 = _mm512_mask_max_epu32(b0, k, b0, _mm512_castps_si512(v));
            i += 16;
        }
        let mx = _mm512_max_ps(_mm512_max_ps(a0, a1), _mm512_max_ps(a2, a3));
        let u = _mm512_reduce_max_epu32(_mm512_max_epu32(b0, b1));
        let lo = if u >> 31 == 1 { f32::from_bits(u) } else { 0.0 };
        (_mm512_reduce_max_ps(mx), lo)
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn scale_f32(x: &mut [f32], f: f32) {
        let n = x.len();
        let p = x.as_mut_ptr();
        let vf = _mm512_set1_ps(f);
        let mut i = head_f32(p, n);
        if i > 0 {
            let k = mask16(i);
            _mm512_mask_storeu_ps(p, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, p), vf));
        }
        while i + 64 <= n {
            for j in (0..64).step_by(16) {
                _mm512_storeu_ps(
                    p.add(i + j),
                    _mm512_mul_ps(_mm512_loadu_ps(p.add(i + j)), vf),
                );
            }
            i += 64;
        }
        while i < n {
            let k = if n - i >= 16 { 0xffff } else { mask16(n - i) };
            let v = _mm512_maskz_loadu_ps(k, p.add(i));
            _mm512_mask_storeu_ps(p.add(i), k, _mm512_mul_ps(v, vf));
            i += 16;
        }
    }

    /// `dst = src·f` with `vmovntps` once `dst` is 64-byte aligned (masked plain stores for
    /// the head and tail; plain throughout when `dst` is not even 4-byte aligned).
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn scale_into_stream_f32(src: &[f32], f: f32, dst: &mut [f32]) {
        let n = src.len();
        let (p, q) = (src.as_ptr(), dst.as_mut_ptr());
        let vf = _mm512_set1_ps(f);
        let mut i = 0;
        if (q as usize) % 4 == 0 {
            i = head_f32(q, n);
            if i > 0 {
                let k = mask16(i);
                _mm512_mask_storeu_ps(q, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, p), vf));
            }
            while i + 16 <= n {
                _mm512_stream_ps(q.add(i), _mm512_mul_ps(_mm512_loadu_ps(p.add(i)), vf));
                i += 16;
            }
        }
        while i < n {
            let k = if n - i >= 16 { 0xffff } else { mask16(n - i) };
            let v = _mm512_maskz_loadu_ps(k, p.add(i));
            _mm512_mask_storeu_ps(q.add(i), k, _mm512_mul_ps(v, vf));
            i += 16;
        }
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn scale_into_stream_f64(src: &[f64], f: f64, dst: &mut [f64]) {
        let n = src.len();
        let (p, q) = (src.as_ptr(), dst.as_mut_ptr());
        let vf = _mm512_set1_pd(f);
        let mut i = 0;
        if (q as usize) % 8 == 0 {
            i = ((64 - (q as usize) % 64) % 64 / 8).min(n);
            if i > 0 {
                let k = mask8(i);
                _mm512_mask_storeu_pd(q, k, _mm512_mul_pd(_mm512_maskz_loadu_pd(k, p), vf));
            }
            while i + 8 <= n {
                _mm512_stream_pd(q.add(i), _mm512_mul_pd(_mm512_loadu_pd(p.add(i)), vf));
                i += 8;
            }
        }
        while i < n {
            let k = if n - i >= 8 { 0xff } else { mask8(n - i) };
            let v = _mm512_maskz_loadu_pd(k, p.add(i));
            _mm512_mask_storeu_pd(q.add(i), k, _mm512_mul_pd(v, vf));
            i += 8;
        }
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn max_f64(x: &[f64]) -> f64 {
        let n = x.len();
        let p = x.as_ptr();
        let ninf = _mm512_set1_pd(f64::NEG_INFINITY);
        let (mut a0, mut a1, mut a2, mut a3) = (ninf, ninf, ninf, ninf);
        let mut i = 0;
        while i + 32 <= n {
            a0 = _mm512_max_pd(a0, _mm512_loadu_pd(p.add(i)));
            a1 = _mm512_max_pd(a1, _mm512_loadu_pd(p.add(i + 8)));
            a2 = _mm512_max_pd(a2, _mm512_loadu_pd(p.add(i + 16)));
            a3 = _mm512_max_pd(a3, _mm512_loadu_pd(p.add(i + 24)));
            i += 32;
        }
        while i + 8 <= n {
            a0 = _mm512_max_pd(a0, _mm512_loadu_pd(p.add(i)));
            i += 8;
        }
        if i < n {
            a1 = _mm512_max_pd(a1, _mm512_mask_loadu_pd(ninf, mask8(n - i), p.add(i)));
        }
        _mm512_reduce_max_pd(_mm512_max_pd(_mm512_max_pd(a0, a1), _mm512_max_pd(a2, a3)))
    }

    /// `(x − m)·c`, skipping the multiply when the temperature is 1 (the common case).
    #[inline(always)]
    unsafe fn arg_ps<const SCALED: bool>(x: __m512, vm: __m512, vc: __m512) -> __m512 {
        let d = _mm512_sub_ps(x, vm);
        if SCALED {
            _mm512_mul_ps(d, vc)
        } else {
            d
        }
    }

    #[inline(always)]
    unsafe fn arg_pd<const SCALED: bool>(x: __m512d, vm: __m512d, vc: __m512d) -> __m512d {
        let d = _mm512_sub_pd(x, vm);
        if SCALED {
            _mm512_mul_pd(d, vc)
        } else {
            d
        }
    }

    /// `clamp = false` promises `(x − m)·c ≥ EXP_NO_CLAMP` for every non-NaN `x`.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn ess_f32(x: &[f32], m: f32, c: f32, out: &mut [f32], clamp: bool) -> f64 {
        match (c == 1.0, clamp) {
            (true, true) => ess_f32_k::<false, true, true, false>(x, m, c, Some(out)),
            (true, false) => ess_f32_k::<false, true, false, false>(x, m, c, Some(out)),
            (false, true) => ess_f32_k::<true, true, true, false>(x, m, c, Some(out)),
            (false, false) => ess_f32_k::<true, true, false, false>(x, m, c, Some(out)),
        }
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn es_f32(x: &[f32], m: f32, c: f32, clamp: bool) -> f64 {
        match (c == 1.0, clamp) {
            (true, true) => ess_f32_k::<false, false, true, false>(x, m, c, None),
            (true, false) => ess_f32_k::<false, false, false, false>(x, m, c, None),
            (false, true) => ess_f32_k::<true, false, true, false>(x, m, c, None),
            (false, false) => ess_f32_k::<true, false, false, false>(x, m, c, None),
        }
    }

    /// `out = exp(x − mg·ln2/16)`, returns the sum; `m` is the block's maximum (its lanes fill
    /// the masked head and tail). The caller guarantees `grid_point`'s conditions.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn ess_grid_f32(x: &[f32], m: f32, mg: f32, out: &mut [f32]) -> f64 {
        ess_f32_k::<false, true, false, true>(x, m, F32_MAGIC - mg, Some(out))
    }

    /// Exp-(store-)sum; `STORE` says whether `out` is given (its length equals `x.len()`).
    /// With `GRID` the terms are `exp(x − M·ln2/16)` and `c` is `1.5·2²³ − M` (see
    /// `exp_grid_ps`; `SCALED` and `CLAMP` must be false).
    #[inline(always)]
    unsafe fn ess_f32_k<
        const SCALED: bool,
        const STORE: bool,
        const CLAMP: bool,
        const GRID: bool,
    >(
        x: &[f32],
        m: f32,
        c: f32,
        out: Option<&mut [f32]>,
    ) -> f64 {
        let mut mm = (0.0, 0.0);
        ess_f32_kf::<SCALED, STORE, CLAMP, GRID, false>(x, m, c, out, std::ptr::null(), &mut mm)
    }

    /// `ess_grid_f32` that also finds the maximum and lower bound (as `max_min_f32`) of `next`
    /// (same length as `x`): its loads ride along in the exp loop, whose float-multiply
    /// units are the bottleneck, instead of a separate pass that waits on memory.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn ess_grid_mm_f32(
        x: &[f32],
        m: f32,
        mg: f32,
        out: &mut [f32],
        next: &[f32],
    ) -> (f64, f32, f32) {
        assert_eq!(next.len(), x.len());
        let mut mm = (0.0, 0.0);
        let s = ess_f32_kf::<false, true, false, true, true>(
            x,
            m,
            F32_MAGIC - mg,
            Some(out),
            next.as_ptr(),
            &mut mm,
        );
        (s, mm.0, mm.1)
    }

    /// The kernel behind `ess_f32_k`; with `MM` it also stores in `mm` the maximum and lower
    /// bound of the `x.len()` elements at `nx` (see `ess_grid_mm_f32`).
    #[inline(always)]
    unsafe fn ess_f32_kf<
        const SCALED: bool,
        const STORE: bool,
        const CLAMP: bool,
        const GRID: bool,
        const MM: bool,
    >(
        x: &[f32],
        m: f32,
        c: f32,
        out: Option<&mut [f32]>,
        nx: *const f32,
        mm: &mut (f32, f32),
    ) -> f64 {
        let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
        let (mut a0, mut a1) = (ninf, ninf);
        let (mut b0, mut b1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
        let n = x.len();
        let p = x.as_ptr();
        let q = match out {
            Some(o) => o.as_mut_ptr(),
            None => std::ptr::null_mut(),
        };
        let (vm, vc) = (_mm512_set1_ps(m), _mm512_set1_ps(c));
        // A macro, not a closure: a closure is a separate function without the enclosing
        // target features (it was not inlined, and every intrinsic became a call).
        macro_rules! exv {
            ($v:expr) => {
                if GRID {
                    exp_grid_ps($v, vc)
                } else {
                    exp_ps::<CLAMP>(arg_ps::<SCALED>($v, vm, vc))
                }
            };
        }
        macro_rules! ex {
            ($i:expr) => {
                exv!(_mm512_loadu_ps(p.add($i)))
            };
        }
        let mut s0 = _mm512_setzero_pd();
        // Align the loads: input and output usually share their offset from a cache line, so
        // both end up aligned, and the split of the sum (so its last bits) depends on the
        // input's address only, not on where the output goes.
        let mut i = head_f32(p, n);
        if i > 0 {
            let k = mask16(i);
            // Left-out lanes load `m` (exp(0) = 1) and are dropped from the store and the sum.
            let e0 = exv!(_mm512_mask_loadu_ps(vm, k, p));
            if STORE {
                _mm512_mask_storeu_ps(q, k, e0);
            }
            s0 = acc_ps(s0, _mm512_maskz_mov_ps(k, e0));
        }
        let fuse_from = i;
        // Eight vectors per step, summed in float32 before widening to the float64
        // accumulator: a sum of eight values ≤ 1 loses at most ~4 eps, and widening once per
        // 128 elements instead of per 16 removes most of the conversion work.
        while i + 128 <= n {
            // Prefetch the input 8 KiB ahead (the next block of a long row, the row after next
            // of a 1024-wide array: the max pass that comes first stalls on memory without it)
            // and the output 4 KiB ahead for writing (the stores otherwise wait in the store
            // buffer for their read-for-ownership, and the scale pass behind them too).
            // Prefetches never fault, so running past either end is harmless.
            for j in (0..128).step_by(16) {
                // With `MM` the next block's own loads run 8 KiB ahead: prefetch the one after.
                let ahead = if MM { 4096 } else { 2048 };
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(i + j + ahead) as *const i8);
                if STORE {
                    _mm_prefetch::<_MM_HINT_ET0>(q.wrapping_add(i + j + 1024) as *const i8);
                }
            }
            let mut part = [_mm512_setzero_ps(); 2];
            for (h, acc) in part.iter_mut().enumerate() {
                let b = i + 64 * h;
                let (e0, e1, e2, e3) = (ex!(b), ex!(b + 16), ex!(b + 32), ex!(b + 48));
                if STORE {
                    _mm512_storeu_ps(q.add(b), e0);
                    _mm512_storeu_ps(q.add(b + 16), e1);
                    _mm512_storeu_ps(q.add(b + 32), e2);
                    _mm512_storeu_ps(q.add(b + 48), e3);
                }
                *acc = _mm512_add_ps(_mm512_add_ps(e0, e1), _mm512_add_ps(e2, e3));
                if MM {
                    // The next block's maximum and lower bound (see `max_min_f32`).
                    let v0 = _mm512_loadu_ps(nx.add(b));
                    let v1 = _mm512_loadu_ps(nx.add(b + 16));
                    let v2 = _mm512_loadu_ps(nx.add(b + 32));
                    let v3 = _mm512_loadu_ps(nx.add(b + 48));
                    a0 = _mm512_max_ps(a0, _mm512_max_ps(v0, v1));
                    a1 = _mm512_max_ps(a1, _mm512_max_ps(v2, v3));
                    let (u0, u1) = (_mm512_castps_si512(v0), _mm512_castps_si512(v1));
                    let (u2, u3) = (_mm512_castps_si512(v2), _mm512_castps_si512(v3));
                    b0 = _mm512_max_epu32(b0, _mm512_max_epu32(u0, u1));
                    b1 = _mm512_max_epu32(b1, _mm512_max_epu32(u2, u3));
                }
            }
            s0 = acc_ps(s0, _mm512_add_ps(part[0], part[1]));
            i += 128;
        }
        if MM {
            // The parts of the next block outside the main loop, then the whole.
            let (h0, l0) = max_min_f32(std::slice::from_raw_parts(nx, fuse_from));
            let (h1, l1) = max_min_f32(std::slice::from_raw_parts(nx.add(i), n - i));
            let mx = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
            let u = _mm512_reduce_max_epu32(_mm512_max_epu32(b0, b1));
            let lo = if u >> 31 == 1 { f32::from_bits(u) } else { 0.0 };
            // `max_ps` keeps its second operand on NaN, like the separate pass.
            *mm = (mx.max(h0).max(h1), lo.min(l0).min(l1));
        }
        // At most seven vectors and a partial one remain: one float32 partial sum for them.
        let mut part = _mm512_setzero_ps();
        while i + 16 <= n {
            let e0 = ex!(i);
            if STORE {
                _mm512_storeu_ps(q.add(i), e0);
            }
            part = _mm512_add_ps(part, e0);
            i += 16;
        }
        if i < n {
            let k = mask16(n - i);
            // Left-out lanes load `m` (exp(0) = 1) and are dropped from the store and the sum.
            let e0 = exv!(_mm512_mask_loadu_ps(vm, k, p.add(i)));
            if STORE {
                _mm512_mask_storeu_ps(q.add(i), k, e0);
            }
            part = _mm512_add_ps(part, _mm512_maskz_mov_ps(k, e0));
        }
        hsum_pd(acc_ps(s0, part))
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn ess_f64(x: &[f64], m: f64, c: f64, out: &mut [f64]) -> f64 {
        if c == 1.0 {
            ess_f64_k::<false, true>(x, m, c, Some(out))
        } else {
            ess_f64_k::<true, true>(x, m, c, Some(out))
        }
    }

    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn es_f64(x: &[f64], m: f64, c: f64) -> f64 {
        if c == 1.0 {
            ess_f64_k::<false, false>(x, m, c, None)
        } else {
            ess_f64_k::<true, false>(x, m, c, None)
        }
    }

    #[inline(always)]
    unsafe fn ess_f64_k<const SCALED: bool, const STORE: bool>(
        x: &[f64],
        m: f64,
        c: f64,
        out: Option<&mut [f64]>,
    ) -> f64 {
        let n = x.len();
        let p = x.as_ptr();
        let q = match out {
            Some(o) => o.as_mut_ptr(),
            None => std::ptr::null_mut(),
        };
        let (vm, vc) = (_mm512_set1_pd(m), _mm512_set1_pd(c));
        let mut s0 = _mm512_setzero_pd();
        let mut s1 = s0;
        let mut i = 0;
        while i + 16 <= n {
            // Same distances in bytes as the float32 kernel.
            for j in (0..16).step_by(8) {
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(i + j + 1024) as *const i8);
                if STORE {
                    _mm_prefetch::<_MM_HINT_ET0>(q.wrapping_add(i + j + 512) as *const i8);
                }
            }
            let e0 = exp_pd(arg_pd::<SCALED>(_mm512_loadu_pd(p.add(i)), vm, vc));
            let e1 = exp_pd(arg_pd::<SCALED>(_mm512_loadu_pd(p.add(i + 8)), vm, vc));
            if STORE {
                _mm512_storeu_pd(q.add(i), e0);
                _mm512_storeu_pd(q.add(i + 8), e1);
            }
            s0 = _mm512_add_pd(s0, e0);
            s1 = _mm512_add_pd(s1, e1);
            i += 16;
        }
        while i + 8 <= n {
            let e0 = exp_pd(arg_pd::<SCALED>(_mm512_loadu_pd(p.add(i)), vm, vc));
            if STORE {
                _mm512_storeu_pd(q.add(i), e0);
            }
            s0 = _mm512_add_pd(s0, e0);
            i += 8;
        }
        if i < n {
            let k = mask8(n - i);
            let e0 = exp_pd(arg_pd::<SCALED>(
                _mm512_mask_loadu_pd(vm, k, p.add(i)),
                vm,
                vc,
            ));
            if STORE {
                _mm512_mask_storeu_pd(q.add(i), k, e0);
            }
            s1 = _mm512_add_pd(s1, _mm512_maskz_mov_pd(k, e0));
        }
        hsum_pd(_mm512_add_pd(s0, s1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulp_err32(a: f32, b: f64) -> f64 {
        let ulp = (b.abs() as f32).to_bits();
        let ulp = f32::from_bits(ulp + 1) - f32::from_bits(ulp);
        (a as f64 - b).abs() / ulp as f64
    }

    #[test]
    fn scalar_exp_is_accurate() {
        let mut worst32 = 0f64;
        let mut worst64 = 0f64;
        for i in 0..200_000 {
            let x = -87.0 * (i as f64) / 200_000.0;
            worst32 = worst32.max(ulp_err32(exp_neg_f32(x as f32), (x as f32 as f64).exp()));
            let y = -700.0 * (i as f64) / 200_000.0;
            let e = y.exp();
            worst64 = worst64.max((exp_neg_f64(y) - e).abs() / e / f64::EPSILON);
        }
        assert!(worst32 <= 2.0, "f32 exp worst error {worst32} ulp");
        assert!(worst64 <= 4.0, "f64 exp worst error {worst64} eps");
        assert_eq!(exp_neg_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_neg_f64(-1e300), 0.0);
        assert!(exp_neg_f32(f32::NAN).is_nan());
        assert!(exp_neg_f64(f64::NAN).is_nan());
        assert_eq!(exp_neg_f32(0.0), 1.0);
        assert_eq!(exp_neg_f64(0.0), 1.0);
    }

    #[test]
    fn simd_matches_scalar() {
        let x32: Vec<f32> = (0..1003)
            .map(|i| -(i as f32) * 0.0931 + if i % 7 == 0 { -1e30 } else { 0.0 })
            .chain([f32::NEG_INFINITY, -90.0, -87.0, 0.0])
            .collect();
        let mut o1 = vec![0f32; x32.len()];
        let s1 = exp_store_sum_f32(&x32, 0.0, 1.0, &mut o1);
        let o2: Vec<f32> = x32.iter().map(|&v| exp_neg_f32(v)).collect();
        for (a, b) in o1.iter().zip(&o2) {
            assert!(
                ulp_err32(*a, *b as f64) <= 2.0 || (*a == 0.0 && *b < 2e-38),
                "{a} {b}"
            );
        }
        let s2: f64 = o2.iter().map(|&v| v as f64).sum();
        assert!((s1 - s2).abs() <= 1e-6 * s2);
        assert!((exp_sum_f32(&x32, 0.0, 1.0) - s2).abs() <= 1e-6 * s2);
        assert_eq!(max_f32(&x32), 0.0);

        let x64: Vec<f64> = x32.iter().map(|&v| v as f64 * 7.3).collect();
        let mut o3 = vec![0f64; x64.len()];
        let s3 = exp_store_sum_f64(&x64, 0.0, 1.0, &mut o3);
        let s4: f64 = x64.iter().map(|&v| v.exp()).sum();
        assert!((s3 - s4).abs() <= 1e-14 * s4);
        for (a, v) in o3.iter().zip(&x64) {
            let e = v.exp();
            assert!((a - e).abs() <= 4.0 * f64::EPSILON * e || e < 2.3e-308);
        }
        let mut nan = x32.clone();
        nan[500] = f32::NAN;
        assert!(exp_sum_f32(&nan, 0.0, 1.0).is_nan());
    }

    /// The kernels of one level, called directly (the global level is left alone, so tests
    /// running in parallel cannot change which path another test exercises).
    #[allow(clippy::type_complexity)]
    fn kernels32(
        l: Level,
    ) -> (
        fn(&[f32]) -> f32,
        fn(&[f32], f32, f32, &mut [f32]) -> f64,
        fn(&[f32], f32, f32) -> f64,
    ) {
        match l {
            // SAFETY (all arms): `available()` lists only levels detected on this CPU.
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => (
                |x| unsafe { avx512::max_f32(x) },
                |x, m, c, o| unsafe { avx512::ess_f32(x, m, c, o, true) },
                |x, m, c| unsafe { avx512::es_f32(x, m, c, true) },
            ),
            // SAFETY (all arms): as above.
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => (
                |x| unsafe { avx2::max_f32(x) },
                |x, m, c, o| unsafe { avx2::ess_f32(x, m, c, o) },
                |x, m, c| unsafe { avx2::es_f32(x, m, c) },
            ),
            _ => (max_f32_scalar, ess_f32_scalar, es_f32_scalar),
        }
    }

    #[allow(clippy::type_complexity)]
    fn kernels64(
        l: Level,
    ) -> (
        fn(&[f64]) -> f64,
        fn(&[f64], f64, f64, &mut [f64]) -> f64,
        fn(&[f64], f64, f64) -> f64,
    ) {
        match l {
            // SAFETY (all arms): `available()` lists only levels detected on this CPU.
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => (
                |x| unsafe { avx512::max_f64(x) },
                |x, m, c, o| unsafe { avx512::ess_f64(x, m, c, o) },
                |x, m, c| unsafe { avx512::es_f64(x, m, c) },
            ),
            // SAFETY (all arms): as above.
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => (
                |x| unsafe { avx2::max_f64(x) },
                |x, m, c, o| unsafe { avx2::ess_f64(x, m, c, o) },
                |x, m, c| unsafe { avx2::es_f64(x, m, c) },
            ),
            _ => (max_f64_scalar, ess_f64_scalar, es_f64_scalar),
        }
    }

    /// The AVX-512 lower bound: the minimum when it is negative (−∞ included, at any
    /// position and tail length), 0 when every element is ≥ 0.
    #[test]
    fn max_min_lower_bound() {
        if crate::simd::detected() != Level::Avx512 {
            return;
        }
        for n in [1usize, 15, 16, 17, 64, 100, 300] {
            for at in [0, n / 2, n - 1] {
                let pos: Vec<f32> = (0..n).map(|i| 1.0 + (i % 13) as f32).collect();
                // SAFETY: AVX-512F detected (checked above).
                let (mx, lo) = unsafe { avx512::max_min_f32(&pos) };
                assert_eq!((mx, lo), (max_f32_scalar(&pos), 0.0), "n={n}");
                for v in [-0.5f32, -1e30, f32::NEG_INFINITY, -0.0] {
                    let mut x = pos.clone();
                    x[at] = v;
                    x[(at + 1) % n] = -0.25_f32.max(v);
                    // SAFETY: as above.
                    let (_, lo) = unsafe { avx512::max_min_f32(&x) };
                    let want = x.iter().cloned().fold(f32::INFINITY, f32::min);
                    assert!(
                        lo == want && lo.to_bits() == want.to_bits() || v == -0.0,
                        "n={n} v={v}"
                    );
                    assert!(lo <= want, "n={n} v={v}");
                }
            }
        }
    }

    /// The AVX-512 float32 kernel without its clamp (and with `vscalefps`) gives the same bits
    /// as with it whenever the promise `(x − m)·c ≥ EXP_NO_CLAMP` holds, down to the edge;
    /// `max_min_f32` finds both extremes; the `_above` entry points choose correctly.
    #[test]
    fn unclamped_kernel_is_bit_identical() {
        if crate::simd::detected() != Level::Avx512 {
            return;
        }
        for n in (0..300).chain([1000, 2048, 2049]) {
            for (m, c) in [(0.0f32, 1.0f32), (3.5, 1.0), (1.0, 0.37), (-2.0, 2.5)] {
                // Arguments spread over [EXP_NO_CLAMP, 0], both ends included.
                let x: Vec<f32> = (0..n)
                    .map(|i| {
                        let a = match i % 11 {
                            0 => EXP_NO_CLAMP,
                            1 => 0.0,
                            _ => EXP_NO_CLAMP * ((i * 7919) % 1000) as f32 / 1000.0,
                        };
                        a / c + m
                    })
                    .map(|v| v.min(m))
                    .collect();
                // SAFETY: AVX-512F detected (checked above).
                let (mx, lo) = unsafe { avx512::max_min_f32(&x) };
                assert_eq!(mx, max_f32_scalar(&x));
                let want_lo = x.iter().cloned().fold(f32::INFINITY, f32::min);
                if want_lo < 0.0 || n == 0 {
                    assert!(lo == want_lo || n == 0, "n={n}");
                } else {
                    assert_eq!(lo, 0.0, "n={n}");
                }
                // The division can round an argument just below the edge: skip such rows.
                if !x.is_empty() && needs_clamp(lo, m, c) {
                    continue;
                }
                // One output buffer for both (same addresses, same work).
                let mut o = vec![0f32; n];
                // SAFETY: AVX-512F detected (checked above); the promise holds (checked above).
                let s1 = unsafe { avx512::ess_f32(&x, m, c, &mut o, true) };
                let o1 = o.clone();
                // SAFETY: as above.
                let s2 = unsafe { avx512::ess_f32(&x, m, c, &mut o, false) };
                let o2 = o.clone();
                assert_eq!(s1.to_bits(), s2.to_bits(), "n={n}");
                assert!(o1.iter().zip(&o2).all(|(a, b)| a.to_bits() == b.to_bits()));
                // Without stores the loads are aligned instead, so the sum may be split
                // differently: compare like with like.
                // SAFETY: as above.
                let (s3, s5) = unsafe {
                    (
                        avx512::es_f32(&x, m, c, false),
                        avx512::es_f32(&x, m, c, true),
                    )
                };
                assert_eq!(s3.to_bits(), s5.to_bits());
                assert!((s3 - s1).abs() <= 1e-6 * s1);
                // The public entry points, when the level in use is AVX-512 (it may be capped
                // by PROBCRAFT_SIMD; they then take another, tested, path).
                if path() == Path::Avx512 {
                    assert_eq!(max_min_f32(&x), (mx, lo));
                    let s4 = exp_store_sum_f32_above(&x, m, c, lo, &mut o);
                    assert_eq!(s4.to_bits(), s1.to_bits());
                    assert_eq!(exp_sum_f32_above(&x, m, c, lo).to_bits(), s5.to_bits());
                }
            }
        }
        // A bound below the edge (or NaN) keeps the clamp: −∞ still gives exactly 0.
        let x = [0.0f32, f32::NEG_INFINITY, -100.0];
        let mut o = [1f32; 3];
        let s = exp_store_sum_f32_above(&x, 0.0, 1.0, f32::NEG_INFINITY, &mut o);
        assert_eq!((s, o), (1.0, [1.0, 0.0, 0.0]));
        assert!(exp_sum_f32_above(&x, 0.0, 1.0, f32::NAN) == 1.0);
    }

    /// The AVX-512 grid kernel (`exp(x − M·ln2/16)`) against f64 within 1 ulp, its sum, and the
    /// next block's maximum and bound found in its loop against `max_min_f32`, at every length
    /// to 300 and at block sizes, every offset within a cache line; the results with and
    /// without the next block are the same bits.
    #[test]
    fn grid_kernel_matches_f64_and_finds_next_bound() {
        assert_eq!(grid_point(1.0, 0.5, 0.0), None);
        assert_eq!(grid_point(3000.0, 1.0, 0.0), None);
        assert_eq!(grid_point(0.0, 1.0, -87.0), None);
        assert_eq!(grid_point(0.0, 1.0, f32::NAN), None);
        assert_eq!(grid_point(0.0, 1.0, f32::NEG_INFINITY), None);
        assert_eq!(grid_point(1.0, 1.0, -80.0), Some(23.0));
        if crate::simd::detected() != Level::Avx512 {
            return;
        }
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 24) as f32
        };
        let (mut worst, mut worst_scalar, mut worst_avx2) = (0f64, 0f64, 0f64);
        let lens = (0..300).chain([2047, 2048, 2049]);
        for (k, n) in lens.enumerate() {
            let m = [-1500.0f32, -57.018, -3.1, 0.0, 0.3, 5.5, 40.0, -600.0][k % 8];
            let off = k % 16;
            let spread = if m.abs() > 1000.0 { 40.0 } else { 86.0 };
            let mut buf: Vec<f32> = (0..n + 16).map(|_| m - rnd() * spread).collect();
            if n > 0 {
                buf[off + (k * 7) % n] = m;
            }
            let x = &buf[off..off + n];
            let mut nbuf: Vec<f32> = (0..n + 16).map(|_| (rnd() - 0.3) * 10.0).collect();
            match k % 4 {
                0 if n > 0 => nbuf[off + n - 1] = f32::NEG_INFINITY,
                1 => nbuf.iter_mut().for_each(|v| *v = v.abs()),
                2 if n > 0 => nbuf[off] = -1e30,
                _ => {}
            }
            let next = &nbuf[off..off + n];
            let (mx, lo) = max_min_f32(x);
            let Some(mg) = grid_point(mx, 1.0, lo) else {
                assert_eq!(n, 0);
                continue;
            };
            let mut o1 = vec![7f32; n + 16];
            let mut o2 = vec![7f32; n + 16];
            // SAFETY: AVX-512F detected (checked above); `grid_point` holds.
            let s1 = unsafe { avx512::ess_grid_f32(x, mx, mg as f32, &mut o1[off..off + n]) };
            // SAFETY: as above; equal lengths.
            let (s2, h, l) =
                unsafe { avx512::ess_grid_mm_f32(x, mx, mg as f32, &mut o2[off..off + n], next) };
            assert_eq!(s1.to_bits(), s2.to_bits(), "n={n}");
            assert!(o1.iter().zip(&o2).all(|(a, b)| a.to_bits() == b.to_bits()));
            assert!(o1[..off].iter().chain(&o1[off + n..]).all(|&v| v == 7.0));
            // SAFETY: as above.
            let (wh, wl) = unsafe { avx512::max_min_f32(next) };
            assert_eq!(
                (h.to_bits(), l.to_bits()),
                (wh.to_bits(), wl.to_bits()),
                "n={n}"
            );
            let r = mg * LN2_16_F64;
            // The scalar kernel on the same reference, and AVX2 on its own (`K·ln 2`).
            let mut o4 = vec![0f32; n];
            for (a, &b) in o4.iter_mut().zip(x) {
                *a = exp_grid_f32(b, mg);
            }
            let k2 = (mx as f64 * LOG2E).round_ties_even();
            let r2 = k2 * std::f64::consts::LN_2;
            let mut o5 = vec![0f32; n];
            // SAFETY: AVX-512F implies AVX2 and FMA (`Level::Avx512`); same bounds.
            let s5 = unsafe { avx2::ess_grid_f32(x, k2, &mut o5) };
            let mut want2 = 0f64;
            for ((&xi, &a), &b) in x.iter().zip(&o4).zip(&o5) {
                worst_scalar = worst_scalar.max(ulp_err32(a, (xi as f64 - r).exp()));
                let w2 = (xi as f64 - r2).exp();
                want2 += w2;
                worst_avx2 = worst_avx2.max(ulp_err32(b, w2));
            }
            assert!((s5 - want2).abs() <= 1e-6 * want2, "n={n} {s5} {want2}");
            let mut want_sum = 0f64;
            for (&xi, &oi) in x.iter().zip(&o1[off..off + n]) {
                let want = (xi as f64 - r).exp();
                want_sum += want;
                worst = worst.max(ulp_err32(oi, want));
            }
            assert!(
                (s1 - want_sum).abs() <= 1e-6 * want_sum,
                "n={n} {s1} {want_sum}"
            );
            if path() == Path::Avx512 {
                let mut o3 = vec![0f32; n];
                let (s3, r3, mm) = exp_store_sum_f32_ref(x, mx, 1.0, lo, &mut o3, Some(next));
                assert_eq!((s3.to_bits(), r3), (s1.to_bits(), r));
                assert_eq!(mm, Some((wh, wl)));
                assert!(o3
                    .iter()
                    .zip(&o1[off..])
                    .all(|(a, b)| a.to_bits() == b.to_bits()));
                // A next block of another length is not scanned.
                let (_, _, mm) = exp_store_sum_f32_ref(x, mx, 1.0, lo, &mut o3, Some(&[]));
                assert!(mm.is_none() || n == 0);
            }
        }
        assert!(worst <= 1.1, "grid exp worst error {worst} ulp");
        assert!(
            worst_scalar <= 1.1,
            "scalar grid exp worst error {worst_scalar} ulp"
        );
        assert!(
            worst_avx2 <= 2.0,
            "AVX2 grid exp worst error {worst_avx2} ulp"
        );
        eprintln!("grid exp worst: AVX-512 {worst:.3}, scalar {worst_scalar:.3}, AVX2 {worst_avx2:.3} ulp");
    }

    /// The streaming scale of every level against a plain multiply, bit for bit: every length
    /// to 100, every element offset within a cache line, float32 and float64.
    #[test]
    fn streaming_scale_matches_plain() {
        #[cfg(target_arch = "x86_64")]
        let levels: Vec<Level> = crate::simd::available();
        #[cfg(not(target_arch = "x86_64"))]
        let levels: Vec<Level> = vec![Level::Scalar];
        let src: Vec<f64> = (0..140).map(|i| (i as f64 * 0.731).sin() * 3.0).collect();
        let src32: Vec<f32> = src.iter().map(|&v| v as f32).collect();
        let f = 0.123_456_789_f64;
        for &l in &levels {
            for n in 0..100 {
                for off in 0..16 {
                    let mut d32 = vec![7f32; 140];
                    let mut d64 = vec![7f64; 140];
                    let (a32, a64) = (&src32[..n], &src[..n]);
                    let (o32, o64) = (&mut d32[off..off + n], &mut d64[off..off + n]);
                    match l {
                        // SAFETY (both arms): `available()` lists only detected levels.
                        #[cfg(target_arch = "x86_64")]
                        Level::Avx512 => unsafe {
                            avx512::scale_into_stream_f32(a32, f as f32, o32);
                            avx512::scale_into_stream_f64(a64, f, o64);
                        },
                        // SAFETY: as above.
                        #[cfg(target_arch = "x86_64")]
                        Level::Avx2 => unsafe {
                            avx2::scale_into_stream_f32(a32, f as f32, o32);
                            avx2::scale_into_stream_f64(a64, f, o64);
                        },
                        _ => {
                            scale_into_streaming(a32, f, o32);
                            scale_into_streaming(a64, f, o64);
                        }
                    }
                    streaming_done();
                    for i in 0..140 {
                        let inside = i >= off && i < off + n;
                        let w32 = if inside {
                            src32[i - off] * f as f32
                        } else {
                            7.0
                        };
                        let w64 = if inside { src[i - off] * f } else { 7.0 };
                        assert_eq!(d32[i].to_bits(), w32.to_bits(), "{l:?} n={n} off={off}");
                        assert_eq!(d64[i].to_bits(), w64.to_bits(), "{l:?} n={n} off={off}");
                    }
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        {
            let llc = detect_llc_bytes();
            assert!(llc.is_none_or(|b| b >= 1 << 16), "{llc:?}");
        }
        assert!(!stream_output(1 << 16));
    }

    /// Every SIMD level this CPU has against the scalar kernels: every length up to 300 (all
    /// tail lengths of 8- and 16-lane loops and of the 64-element main loop), every start
    /// offset modulo a cache line, both temperature paths, values down to and past the flush
    /// point, −∞ and NaN.
    #[test]
    fn every_level_matches_scalar() {
        let levels: Vec<Level> = crate::simd::available()
            .into_iter()
            .filter(|&l| l != Level::Scalar)
            .collect();
        let base: Vec<f64> = (0..340)
            .map(|i| {
                let v = -((i * 7919 % 1000) as f64) * 0.0931;
                match i % 23 {
                    0 => f64::NEG_INFINITY,
                    5 => -1e30,
                    11 => -87.9,
                    17 => 0.0,
                    _ => v,
                }
            })
            .collect();
        for &l in &levels {
            let (max32, ess32, es32) = kernels32(l);
            let (max64, ess64, es64) = kernels64(l);
            for n in 0..300 {
                for off in [0usize, 1, 5, 15] {
                    let x32: Vec<f32> = base[off..off + n].iter().map(|&v| v as f32).collect();
                    let x64: Vec<f64> = base[off..off + n].iter().map(|&v| v * 7.3).collect();
                    assert_eq!(max32(&x32), max_f32_scalar(&x32), "{l:?} n={n}");
                    #[cfg(target_arch = "x86_64")]
                    if l == Level::Avx2 {
                        let lo = x32.iter().fold(f32::INFINITY, |a, &v| a.min(v));
                        // SAFETY: `available()` lists only detected levels.
                        let got = unsafe { avx2::max_min_f32(&x32) };
                        assert_eq!(got, (max_f32_scalar(&x32), lo), "n={n}");
                    }
                    assert_eq!(max64(&x64), max_f64_scalar(&x64), "{l:?} n={n}");
                    for (m, c) in [(0.0, 1.0), (0.5, 0.37), (2.0, 1.7)] {
                        // Canaries past the end: the masked tail must not store there.
                        let mut o1 = vec![9f32; n + 16];
                        let mut o2 = vec![7f32; n];
                        let s1 = ess32(&x32, m as f32, c as f32, &mut o1[..n]);
                        assert!(o1[n..].iter().all(|&v| v == 9.0));
                        let s2 = ess_f32_scalar(&x32, m as f32, c as f32, &mut o2);
                        for (a, b) in o1.iter().zip(&o2) {
                            assert!(
                                ulp_err32(*a, *b as f64) <= 2.0 || (*a == 0.0 && *b < 2e-38),
                                "{l:?} n={n} {a} {b}"
                            );
                        }
                        assert!((s1 - s2).abs() <= 1e-6 * s2, "{l:?} n={n} {s1} {s2}");
                        let s3 = es32(&x32, m as f32, c as f32);
                        assert!((s3 - s2).abs() <= 1e-6 * s2, "{l:?} n={n} {s3} {s2}");

                        let mut o3 = vec![9f64; n + 8];
                        let mut o4 = vec![7f64; n];
                        let s4 = ess64(&x64, m, c, &mut o3[..n]);
                        assert!(o3[n..].iter().all(|&v| v == 9.0));
                        let s5 = ess_f64_scalar(&x64, m, c, &mut o4);
                        for (a, b) in o3.iter().zip(&o4) {
                            assert!(
                                (a - b).abs() <= 4.0 * f64::EPSILON * b
                                    || (*b < 2.3e-308 && *a < 2.3e-308),
                                "{l:?} n={n} {a} {b}"
                            );
                        }
                        assert!((s4 - s5).abs() <= 1e-14 * s5, "{l:?} n={n}");
                        let s6 = es64(&x64, m, c);
                        assert!((s6 - s5).abs() <= 1e-14 * s5, "{l:?} n={n}");
                    }
                    if n > 0 {
                        // NaN in any position (main loop, 16/8-lane loop, masked tail) propagates.
                        for pos in [0, n / 2, n - 1] {
                            let mut y32 = x32.clone();
                            y32[pos] = f32::NAN;
                            let mut o = vec![0f32; n];
                            assert!(ess32(&y32, 0.0, 1.0, &mut o).is_nan(), "{l:?} n={n}");
                            assert!(o[pos].is_nan());
                            assert!(es32(&y32, 0.0, 0.5).is_nan());
                            let mut y64 = x64.clone();
                            y64[pos] = f64::NAN;
                            let mut o = vec![0f64; n];
                            assert!(ess64(&y64, 0.0, 1.0, &mut o).is_nan(), "{l:?} n={n}");
                            assert!(o[pos].is_nan());
                            assert!(es64(&y64, 0.0, 0.5).is_nan());
                        }
                    }
                }
            }
        }
    }
}
