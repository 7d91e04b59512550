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


def _softmax() -> None:
    from . import losses

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4096, 1024)).astype(np.float32)
    t0 = time.perf_counter()
    p = probcraft.softmax(x)
    dt = time.perf_counter() - t0
    sp = probcraft.sparsemax(x)
    e15 = probcraft.entmax15(x)
    target = rng.integers(0, 1024, 4096)
    ce = losses.cross_entropy(x, target)
    print(
        f"softmax: 4096x1024 float32 in {dt * 1e3:.1f} ms ({x.nbytes / dt / 1e9:.2f} GB/s), "
        f"rows sum to 1 within {np.abs(p.sum(-1) - 1).max():.1e}; sparsemax keeps "
        f"{(sp > 0).sum(-1).mean():.1f} entries/row, entmax15 {(e15 > 0).sum(-1).mean():.1f}; "
        f"cross-entropy {ce:.3f} (log 1024 = {np.log(1024):.3f})"
    )


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


def main() -> int:
    info = probcraft.build_info()
    print(f"probcraft {info['version']} ({info['profile']}, simd={info['simd']})")
    _streams()
    _softmax()
    _fourier()
    _ = np  # engines below use numpy
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
