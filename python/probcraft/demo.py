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
    _lattice()
    _ = np  # engines below use numpy
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
