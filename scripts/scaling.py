"""Measures time and peak memory of every entry point against input size (docs/limits.md).

Usage: python scripts/scaling.py [--quick]
Prints one Markdown row per entry point: time and extra peak RSS at sizes n, 4n, 16n and the
fitted exponent of time in n (1.0 = linear). Peak RSS is reset before each call through
/proc/self/clear_refs, so each figure is that call's own high-water mark above the baseline.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable

import numpy as np

import probcraft
from probcraft import Unigram


def rss_reset() -> int:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return vm("VmRSS")


def vm(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def measure(f: Callable[[], Any], reps: int = 3) -> tuple[float, int]:
    best = math.inf
    peak = 0
    for _ in range(reps):
        base = rss_reset()
        t0 = time.perf_counter()
        r = f()
        best = min(best, time.perf_counter() - t0)
        peak = max(peak, vm("VmHWM") - base)
        del r
    return best, peak


def fmt_b(b: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(b) < 1024:
            return f"{b:.0f} {unit}"
        b /= 1024  # type: ignore[assignment]
    return f"{b:.1f} TiB"


def main() -> None:
    quick = "--quick" in sys.argv
    n0 = 50_000 if quick else 250_000
    sizes = [n0, 4 * n0, 16 * n0]
    m = Unigram.from_pieces([("a", -1.0), ("aa", -1.5), ("aaa", -2.0), ("b", -2.0), ("ab", -1.2)])
    d = probcraft.FourierDensity(np.array([1.0, 0.3j, 0.2, -0.1]), domain="real")
    rng = np.random.default_rng(0)
    cases: dict[str, Callable[[int], Callable[[], Any]]] = {
        "Unigram.from_pieces (n pieces)": lambda n: (
            lambda p=[(f"p{i}", -1.0) for i in range(n // 8)]: Unigram.from_pieces(p)
        ),
        "Unigram.from_bytes (n/8 pieces)": lambda n: (
            lambda b=Unigram.from_pieces([(f"p{i}", -1.0) for i in range(n // 8)]).to_bytes():
            Unigram.from_bytes(b)
        ),
        "encode (Viterbi)": lambda n: (lambda t="ab" * (n // 2): m.encode(t)),
        "encode (sample, perfect)": lambda n: (lambda t="ab" * (n // 2): m.encode(t, alpha=0.5, seed=0)),
        "encode (sample, ffbs)": lambda n: (
            lambda t="ab" * (n // 2): m.encode(t, alpha=0.5, seed=0, method="ffbs")
        ),
        "encode_batch (n/100 texts)": lambda n: (
            lambda ts=["ab" * 50] * (n // 100): m.encode_batch(ts, num_threads=1)
        ),
        "nbest k=8": lambda n: (lambda t="a" * n: m.nbest(t, 8)),
        "sample n=4": lambda n: (lambda t="a" * n: m.sample(t, 4, alpha=0.5, seed=0)),
        "sample n=4 replace=False": lambda n: (
            lambda t="a" * n: m.sample(t, 4, alpha=0.5, seed=0, replace=False)
        ),
        "log_partition": lambda n: (lambda t="a" * n: m.log_partition(t, 1.0)),
        "entropy": lambda n: (lambda t="a" * n: m.entropy(t, 1.0)),
        "marginals": lambda n: (lambda t="a" * n: m.marginals(t, 1.0)),
        "prefix_candidates": lambda n: (lambda t="a" * n: m.prefix_candidates(t, 1.0)),
        "decode": lambda n: (lambda ids=np.zeros(n, np.int32): m.decode(ids)),
        "softmax (n floats)": lambda n: (lambda x=rng.standard_normal((n // 1000, 1000)): probcraft.softmax(x)),
        "sparsemax (n floats)": lambda n: (
            lambda x=rng.standard_normal((n // 1000, 1000)): probcraft.sparsemax(x)
        ),
        "entmax15 (n floats)": lambda n: (
            lambda x=rng.standard_normal((n // 1000, 1000)): probcraft.entmax15(x)
        ),
        "FourierDensity.pdf (n points)": lambda n: (lambda x=np.linspace(-5, 5, n): d.pdf(x)),
        "FourierDensity.rvs (n draws)": lambda n: (lambda: d.rvs(n, seed=0)),
        "FourierDensity.fit (n points, N=8)": lambda n: (
            lambda x=rng.standard_normal(n): probcraft.FourierDensity.fit(x, 8)
        ),
    }
    print(f"| entry point | {' | '.join(f'n={s:,}' for s in sizes)} | time exponent |")
    print("|---|" + "---|" * len(sizes) + "---|")
    for name, make in cases.items():
        times = []
        cells = []
        for s in sizes:
            t, peak = measure(make(s))
            times.append(t)
            cells.append(f"{t * 1e3:.1f} ms, {fmt_b(peak)}")
        slope = math.log(times[-1] / times[0]) / math.log(sizes[-1] / sizes[0])
        print(f"| {name} | {' | '.join(cells)} | {slope:.2f} |", flush=True)


if __name__ == "__main__":
    main()
