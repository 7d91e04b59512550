#!/usr/bin/env python3
"""How much parallel throughput does this machine give at all? The ceiling for "2 threads ≥ k×".

For each workload, P *independent processes* (no shared memory, no locks, no rayon) each run the
same single-threaded call in a loop for a fixed time; the aggregate calls/s over P processes
divided by one process's calls/s is the most any in-process threading could reach on this
machine for that kind of work. Next to it, the in-process speed-up of ``num_threads=P`` for the
same call, twice: from two separate runs (as ``compare.py`` measures it), and "paired", the
median ratio over alternating short bursts of the two (a drifting shared VM then moves both
sides of each ratio together). On a VM whose vCPUs are hyper-threads of one physical core (or
whose host is oversubscribed), FMA-bound kernels top out far below P× even for independent
processes.

Usage::

    python benches/scaling_ceiling.py [--procs 2] [--seconds 3] [--filter lattice]

Workloads: Fourier pdf (N = 32, 10⁶ points: FMA-bound), softmax on an L2-resident array
(exp-bound), softmax on a 512 MiB array (memory-bound), ``np.copyto`` on 512 MiB (memory
bandwidth), and if ``../shared`` is present the lattice batches of the 2-thread bar (botchan
and zh_fortunes twice over: Viterbi and perfect sampling flat, Viterbi as a list of arrays).
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
    # The lattice batches of the "2 threads >= 1.8x" bar, as benches/peers_lattice.py runs
    # them (each corpus twice over).
    for tag, model_name, corpus_name in [
        ("botchan", "spm_en_botchan_1k.model", "botchan.txt"),
        ("zh_fortunes", "spm_zh_fortunes_8k.model", "zh_fortunes.txt"),
    ]:
        model, corpus = SHARED / "models" / model_name, SHARED / "corpora" / corpus_name
        if not (model.exists() and corpus.exists()):
            continue
        for label, kw in [
            ("Viterbi flat", {"flat": True}),
            ("perfect a=0.1 flat", {"flat": True, "alpha": 0.1, "seed": 1}),
            ("Viterbi list", {}),
        ]:

            def batch(th: int, model: Any = model, corpus: Any = corpus, kw: Any = kw) -> Callable[[], Any]:
                m = probcraft.Unigram.from_sentencepiece(str(model))
                lines = corpus.read_text(encoding="utf-8").splitlines() * 2
                return lambda: m.encode_batch(lines, num_threads=th, **kw)

            w[f"{label} {tag} x2 (lattice)"] = batch
    return w


def _paired(name: str, threads: int, seconds: float) -> float:
    """Median over alternating bursts of the 1-thread / ``threads`` time ratio, in one process:
    each pair is measured within a fraction of a second, so a machine whose speed drifts
    (a shared VM) moves both sides of a ratio together instead of one case's whole run."""
    one, many = _workloads()[name](1), _workloads()[name](threads)
    one(), many()
    ratios = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(ratios) < 5:
        per = []
        for fn in (one, many) if len(ratios) % 2 == 0 else (many, one):
            n, t0 = 0, time.perf_counter()
            while n < 3 or time.perf_counter() - t0 < 0.05:
                fn()
                n += 1
            per.append((time.perf_counter() - t0) / n)
        ratios.append(per[0] / per[1] if len(ratios) % 2 == 0 else per[1] / per[0])
    return float(np.median(ratios))


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
    ap.add_argument("--filter", default="", help="only workloads whose name contains this")
    opts = ap.parse_args()
    p = opts.procs
    ctx = mp.get_context("spawn")
    print(f"cpus={os.cpu_count()}  processes/threads={p}  {opts.seconds:.0f} s per measurement")
    print(
        f"{'workload':46s} {'1 proc /s':>10s} {p} procs agg {'ceiling':>8s} {p} threads {'speed-up':>8s}"
        f" {'paired':>7s}"
    )
    for name in _workloads():
        if opts.filter not in name:
            continue
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
            thr, sp, pr = float("nan"), "n/a", "n/a"
        else:
            thr = _rate(name, p, opts.seconds)
            sp = f"{thr / one:.2f}x"
            pr = f"{_paired(name, p, opts.seconds):.2f}x"
        print(f"{name:46s} {one:10.1f} {agg:13.1f} {agg / one:7.2f}x {thr:9.1f} {sp:>8s} {pr:>7s}", flush=True)


if __name__ == "__main__":
    main()
