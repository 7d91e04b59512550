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


def main() -> int:
    info = probcraft.build_info()
    print(f"probcraft {info['version']} ({info['profile']}, simd={info['simd']})")
    _streams()
    _ = np  # engines below use numpy
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
