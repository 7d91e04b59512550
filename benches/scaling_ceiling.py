#!/usr/bin/env python3
"""How much parallel throughput does this machine give at all? The ceiling for "2 threads ≥ k×".

For each workload, P *independent processes* (no shared memory, no locks, no rayon) each run the
same single-threaded call in a loop for a fixed time; the aggregate calls/s over P processes
divided by one process's calls/s is the most any in-process threading could reach on this
machine for that kind of work. Next to it, the in-process speed-up of ``num_threads=P`` for the
same call. On a VM whose vCPUs are hyper-threads of one physical core (or whose host is
oversubscribed), FMA-bound kernels top out far below P× even for independent processes.

Usage::

    python benches/scaling_ceiling.py [--procs 2] [--seconds 3]

Workloads: Fourier pdf (N = 32, 10⁶ points: FMA-bound), softmax on an L2-resident array
(exp-bound), softmax on a 512 MiB array (memory-bound), ``np.copyto`` on 512 MiB (memory
bandwidth), Viterbi batch encode (if ``../shared`` is present: branchy, cache-bound).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import pathlib
import time
from typing import Any, Callable

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"


def _workloads() -> dict[str, Callable[[int], Callable[[], Any]]]:
    """name -> factory(num_threads) -> zero-argument call (built inside each process)."""
    import probcraft

    def fourier(th: int) -> Callable[[], Any]:
        rng = np.random.default_rng(0)
        d = probcraft.FourierDensity(rng.standard_normal(33) + 1j * rng.standard_normal(33))
        x = rng.uniform(-1, 1, 1_000_000)
        return lambda: d.pdf(x, num_threads=th)

    def softmax_l2(th: int) -> Callable[[], Any]:
        x = np.random.default_rng(0).standard_normal((256, 1024)).astype(np.float32)  # 1 MiB
        out = np.empty_like(x)
        return lambda: probcraft.softmax(x, out=out, num_threads=th)

    def softmax_big(th: int) -> Callable[[], Any]:
        x = np.random.default_rng(0).standard_normal((32768, 4096)).astype(np.float32)
        out = np.empty_like(x)
        return lambda: probcraft.softmax(x, out=out, num_threads=th)

    def copyto_big(th: int) -> Callable[[], Any]:
        x = np.random.default_rng(0).standard_normal((32768, 4096)).astype(np.float32)
        out = np.empty_like(x)
        return lambda: np.copyto(out, x)

    w: dict[str, Callable[[int], Callable[[], Any]]] = {
        "fourier pdf N=32 1e6 pts (FMA-bound)": fourier,
        "softmax f32 256x1024 in L2 (exp-bound)": softmax_l2,
        "softmax f32 512 MiB (memory-bound)": softmax_big,
        "np.copyto 512 MiB (bandwidth; threads n/a)": copyto_big,
    }
    model = SHARED / "models" / "spm_en_botchan_1k.model"
    corpus = SHARED / "corpora" / "botchan.txt"
    if model.exists() and corpus.exists():

        def viterbi(th: int) -> Callable[[], Any]:
            m = probcraft.Unigram.from_sentencepiece(str(model))
            lines = corpus.read_text(encoding="utf-8").splitlines()
            return lambda: m.encode_batch(lines, num_threads=th)

        w["Viterbi encode_batch botchan (cache-bound)"] = viterbi
    return w


def _rate(name: str, threads: int, seconds: float, start: Any = None) -> float:
    fn = _workloads()[name](threads)
    fn()  # warm up (pools, page faults)
    if start is not None:
        start.wait()  # all processes start timing together
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return n / dt


def _child(name: str, seconds: float, start: Any, q: Any) -> None:
    q.put(_rate(name, 1, seconds, start))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3.0)
    opts = ap.parse_args()
    p = opts.procs
    ctx = mp.get_context("spawn")
    print(f"cpus={os.cpu_count()}  processes/threads={p}  {opts.seconds:.0f} s per measurement")
    print(f"{'workload':46s} {'1 proc /s':>10s} {p} procs agg {'ceiling':>8s} {p} threads {'speed-up':>8s}")
    for name in _workloads():
        one = _rate(name, 1, opts.seconds)
        start = ctx.Barrier(p)
        q = ctx.Queue()
        procs = [ctx.Process(target=_child, args=(name, opts.seconds, start, q)) for _ in range(p)]
        for pr in procs:
            pr.start()
        agg = sum(q.get() for _ in procs)
        for pr in procs:
            pr.join()
        if "copyto" in name:
            thr, sp = float("nan"), "n/a"
        else:
            thr = _rate(name, p, opts.seconds)
            sp = f"{thr / one:.2f}x"
        print(f"{name:46s} {one:10.1f} {agg:13.1f} {agg / one:7.2f}x {thr:9.1f} {sp:>8s}", flush=True)


if __name__ == "__main__":
    main()
