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


def main() -> int:
    info = probcraft.build_info()
    print(f"probcraft {info['version']} ({info['profile']}, simd={info['simd']})")
    _streams()
    _softmax()
    _ = np  # engines below use numpy
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
