"""End-to-end run of every engine on data generated here (``python -m probcraft.demo``).

Each engine adds a section; the summary goes to stdout.
"""

from __future__ import annotations

import time

import numpy as np

import probcraft


def _streams() -> None:
    t0 = time.perf_counter()
    u = probcraft.Streams(2024).uniform(0, 1_000_000)
    dt = time.perf_counter() - t0
    print(f"streams: 1e6 uniforms in {dt * 1e3:.1f} ms, mean {u.mean():.4f} (expect 0.5)")


def _fourier() -> None:
    g = np.random.default_rng(2024)
    data = np.concatenate([g.normal(-2.0, 0.5, 500_000), g.laplace(1.5, 1.0, 500_000)])
    t0 = time.perf_counter()
    d = probcraft.FourierDensity.fit(data, 16)
    dt = time.perf_counter() - t0
    x = np.linspace(-6, 6, 1_000_000)
    t1 = time.perf_counter()
    d.pdf(x)
    dp = time.perf_counter() - t1
    s = d.rvs(1_000_000, seed=1)
    print(f"fourier: fit 16 coeffs to 1e6 points in {dt:.2f} s (NLL {d.fit_info['nll']:.4f}), "
          f"pdf 1e6 points in {dp * 1e3:.1f} ms, rvs mean {s.mean():.3f} "
          f"(data {data.mean():.3f})")
def _lattice() -> None:
    pieces = [("a", -1.2), ("b", -1.9), ("ab", -2.1), ("ba", -3.3), ("aba", -3.0), ("abab", -5.0)]
    m = probcraft.Unigram.from_pieces(pieces)
    text = "abababab" * 1000
    t0 = time.perf_counter()
    ids = m.encode(text)
    dt = time.perf_counter() - t0
    draws = m.encode_batch(["ababa"] * 1000, alpha=0.5, seed=1)
    distinct = len({tuple(d.tolist()) for d in draws})
    print(
        f"lattice: Viterbi of {len(text)} bytes in {dt * 1e3:.2f} ms ({ids.size} tokens); "
        f"1000 samples of 'ababa' at alpha=0.5 hit {distinct} segmentations; "
        f"entropy {m.entropy('ababa', 0.5):.3f} nats"
    )


def main() -> int:
    info = probcraft.build_info()
    print(f"probcraft {info['version']} ({info['profile']}, simd={info['simd']})")
    _streams()
    _fourier()
    _lattice()
    _ = np  # engines below use numpy
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
