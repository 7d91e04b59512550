#!/usr/bin/env python3
"""Side-by-side benchmarks of probcraft against its peers, in one process.

Each engine contributes a module ``benches/peers_<engine>.py`` with a function
``cases(opts) -> list[Case]``. Cases in the same ``group`` run the same work; the row marked
``ref=True`` is the reference the ratio column is computed against (ratio = throughput of the
row / throughput of the reference, so > 1 means faster than the reference).

Usage::

    python benches/compare.py                      # every engine
    python benches/compare.py --engine softmax     # one engine
    python benches/compare.py --quick --json out.json

A peer that is not installed is reported as skipped, never silently dropped.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.util
import json
import math
import os
import pathlib
import sys
import time
from typing import Any, Callable, Optional

HERE = pathlib.Path(__file__).resolve().parent


@dataclasses.dataclass
class Case:
    group: str
    name: str
    fn: Optional[Callable[[], Any]]
    nbytes: Optional[int] = None  # bytes processed per call (for MB/s or GB/s)
    items: Optional[int] = None  # items processed per call (for items/s)
    ref: bool = False
    skip: Optional[str] = None  # reason the case cannot run (peer missing, ...)
    setup: Optional[Callable[[], None]] = None
    # Name of another case of the group to time in alternation with this one: the paired
    # ratio (see `paired_ratio`) printed after the table.
    pair: Optional[str] = None


@dataclasses.dataclass
class Result:
    case: Case
    seconds: Optional[float]
    error: Optional[str] = None

    def throughput(self) -> Optional[float]:
        if self.seconds is None or self.seconds <= 0:
            return None
        per = self.case.nbytes if self.case.nbytes is not None else self.case.items
        return None if per is None else per / self.seconds


def time_case(case: Case, min_time: float, repeats: int, stat: str = "mean") -> Result:
    if case.skip or case.fn is None:
        return Result(case, None, case.skip or "no function")
    try:
        if case.setup:
            case.setup()
        case.fn()  # warm-up (and first-call allocations)
        best = float("inf")
        for _ in range(repeats):
            n, t0 = 0, time.perf_counter()
            while True:
                t1 = time.perf_counter()
                case.fn()
                n += 1
                t2 = time.perf_counter()
                if stat == "min":
                    best = min(best, t2 - t1)
                el = t2 - t0
                if el >= min_time:
                    break
            if stat == "mean":
                best = min(best, el / n)
        return Result(case, best)
    except Exception as e:  # report and go on: one broken peer must not hide the others
        return Result(case, None, f"{type(e).__name__}: {e}")
    finally:
        gc.collect()


def paired_ratio(
    ref: Callable[[], Any], fn: Callable[[], Any], min_time: float, pairs: int = 11
) -> tuple[float, float]:
    """Two estimates of (time per call of `ref`) / (time per call of `fn`) from `pairs`
    alternating bursts: the median over the bursts of their mean-time ratios, and the ratio of
    the fastest single calls of either side over all bursts. Each burst ratio comes from two
    bursts a fraction of a second apart, so a shared machine whose speed drifts between one
    case's run and the next moves both sides of it together; the separate rows of the table
    do not have that property. The fastest calls are timeit's estimate (other load only adds
    time), taken here over the same interleaved moments for both sides: for a threads-against-
    one-thread pair it is the speed-up when the second vCPU was not lent to someone else."""
    ratios = []
    fastest = {"ref": math.inf, "fn": math.inf}
    for k in range(pairs):
        per = {}
        for name, f in (("ref", ref), ("fn", fn)) if k % 2 == 0 else (("fn", fn), ("ref", ref)):
            n, t0 = 0, time.perf_counter()
            t = t0
            while n < 3 or t - t0 < min_time / 2:
                f()
                t1 = time.perf_counter()
                fastest[name] = min(fastest[name], t1 - t)
                t = t1
                n += 1
            per[name] = (t - t0) / n
        ratios.append(per["ref"] / per["fn"])
    ratios.sort()
    return ratios[len(ratios) // 2], fastest["ref"] / fastest["fn"]


def print_paired(results: list[Result], min_time: float, pairs: int = 11) -> None:
    rows = [r for r in results if r.case.pair and r.seconds is not None]
    if not rows:
        return
    print(f"\n## paired ratios ({pairs} alternating bursts: median of burst ratios; fastest calls)")
    for r in rows:
        other = next((x for x in results if x.case.group == r.case.group and x.case.name == r.case.pair), None)
        if other is None or other.seconds is None or other.case.fn is None or r.case.fn is None:
            continue
        median, fastest = paired_ratio(other.case.fn, r.case.fn, min_time, pairs)
        print(f"{r.case.group}: {r.case.name} vs {other.case.name}: {median:.2f}x; fastest calls {fastest:.2f}x", flush=True)


def fmt_rate(r: Result) -> str:
    tp = r.throughput()
    if tp is None:
        return "-"
    if r.case.nbytes is not None:
        return f"{tp / 1e9:.2f} GB/s" if tp >= 1e9 else f"{tp / 1e6:.2f} MB/s"
    return f"{tp / 1e6:.3f} M/s" if tp >= 1e5 else f"{tp:.1f} /s"


def print_table(results: list[Result]) -> None:
    groups: dict[str, list[Result]] = {}
    for r in results:
        groups.setdefault(r.case.group, []).append(r)
    w = max([len(r.case.name) for r in results] + [8])
    for g, rs in groups.items():
        print(f"\n## {g}")
        print(f"{'case':<{w}}  {'time':>12}  {'throughput':>12}  {'ratio':>8}")
        ref = next((r for r in rs if r.case.ref and r.throughput()), None)
        for r in rs:
            if r.seconds is None:
                print(f"{r.case.name:<{w}}  {'skipped':>12}  {r.error}")
                continue
            ratio = "-"
            if ref is not None and r.throughput():
                ratio = f"{r.throughput() / ref.throughput():.2f}x"  # type: ignore[operator]
            mark = " (ref)" if r.case.ref else ""
            print(
                f"{r.case.name:<{w}}  {r.seconds * 1e3:>9.3f} ms  {fmt_rate(r):>12}  {ratio:>8}{mark}"
            )


def load_engines(names: Optional[list[str]]) -> dict[str, Any]:
    mods = {}
    for path in sorted(HERE.glob("peers_*.py")):
        eng = path.stem[len("peers_") :]
        if names and eng not in names:
            continue
        spec = importlib.util.spec_from_file_location(f"peers_{eng}", path)
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        mods[eng] = mod
    if names:
        missing = set(names) - set(mods)
        if missing:
            raise SystemExit(f"no benches/peers_<engine>.py for: {', '.join(sorted(missing))}")
    return mods


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--engine", action="append", help="engine(s) to run (default: all)")
    ap.add_argument("--quick", action="store_true", help="small inputs, short timings")
    ap.add_argument("--min-time", type=float, default=None, help="seconds per timing repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="num_threads for batch calls")
    ap.add_argument("--pairs", type=int, default=11,
                    help="alternating bursts per paired ratio (more: a steadier estimate)")
    ap.add_argument("--json", type=pathlib.Path, help="also write results as JSON")
    ap.add_argument("--filter", default=None, help="only groups containing this text")
    ap.add_argument("--stat", choices=["mean", "min"], default="mean",
                    help="mean: best of the repeats' mean time per call (default); min: the\n"
                         "fastest single call (timeit's advice on a noisy machine: slower calls\n"
                         "measure interference, not the code)")
    opts = ap.parse_args(argv)
    if opts.min_time is None:
        opts.min_time = 0.05 if opts.quick else 0.3

    import probcraft

    info = probcraft.build_info()
    print(f"probcraft {info['version']} ({info['profile']}, simd={info['simd']}), "
          f"python {sys.version.split()[0]}, cpus={os.cpu_count()}, threads={opts.threads}, "
          f"stat={opts.stat}")
    results: list[Result] = []
    for eng, mod in load_engines(opts.engine).items():
        for case in mod.cases(opts):
            if opts.filter and opts.filter not in case.group:
                continue
            results.append(time_case(case, opts.min_time, opts.repeats, opts.stat))
    print_table(results)
    print_paired(results, opts.min_time, opts.pairs)
    if opts.json:
        opts.json.write_text(json.dumps([
            {"group": r.case.group, "name": r.case.name, "seconds": r.seconds,
             "throughput": r.throughput(), "ref": r.case.ref, "error": r.error}
            for r in results
        ], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
