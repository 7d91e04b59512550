"""Softmax family against its peers: np.copyto (the memory floor), numpy, scipy, torch (one
thread), the entmax package, torch.topk + softmax; plus 2 threads vs 1 on a large array.

All float32. Ratios are throughput relative to the reference row of each group.
"""

from __future__ import annotations

import os

import numpy as np

import probcraft
from compare import Case

try:
    import scipy.special as sps
except ImportError:  # pragma: no cover
    sps = None
try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    torch = None
try:
    import entmax as ent
except ImportError:  # pragma: no cover
    ent = None


def _np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    e /= e.sum(axis=-1, keepdims=True)
    return e


def cases(opts) -> list[Case]:
    shapes = [(4096, 1024), (64, 65536), (8, 262144)]
    if opts.quick:
        shapes = [(256, 1024), (4, 65536)]
    rng = np.random.default_rng(0)
    out: list[Case] = []
    th = opts.threads
    for shape in shapes:
        x = rng.standard_normal(shape).astype(np.float32)
        dst = np.empty_like(x)
        nb = x.nbytes
        g = f"softmax f32 {shape[0]}x{shape[1]}"
        out.append(Case(g, "np.copyto (memory floor)", lambda x=x, d=dst: np.copyto(d, x), nbytes=nb, ref=True))
        floor = "np.copyto (memory floor)"
        out.append(Case(g, "probcraft.softmax", lambda x=x: probcraft.softmax(x, num_threads=th), nbytes=nb, pair=floor))
        out.append(Case(g, "probcraft.softmax out=", lambda x=x, d=dst: probcraft.softmax(x, out=d, num_threads=th), nbytes=nb,
                        pair=floor))
        out.append(Case(g, "numpy exp/sum", lambda x=x: _np_softmax(x), nbytes=nb))
        out.append(Case(g, "scipy.special.softmax", (lambda x=x: sps.softmax(x, axis=-1)) if sps else None,
                        nbytes=nb, skip=None if sps else "scipy not installed"))
        if torch is not None:
            tx = torch.from_numpy(x)
            out.append(Case(g, "torch.softmax (1 thread)", lambda tx=tx: torch.softmax(tx, -1), nbytes=nb))
        else:
            out.append(Case(g, "torch.softmax", None, skip="torch not installed"))

    # sparse maps vs the entmax package, on its typical shapes
    shape = (256, 1024) if opts.quick else (4096, 1024)
    x = rng.standard_normal(shape).astype(np.float32)
    nb = x.nbytes
    tx = torch.from_numpy(x) if torch is not None else None
    miss = None if (ent is not None and torch is not None) else "entmax/torch not installed"
    for name, ours, theirs in [
        ("sparsemax", lambda: probcraft.sparsemax(x, num_threads=th), lambda: ent.sparsemax(tx, dim=-1)),
        ("entmax15", lambda: probcraft.entmax15(x, num_threads=th), lambda: ent.entmax15(tx, dim=-1)),
        ("entmax(alpha=1.25)", lambda: probcraft.entmax(x, 1.25, num_threads=th),
         lambda: ent.entmax_bisect(tx, alpha=1.25, dim=-1)),
        ("entmax(alpha=1.5) generic", lambda: probcraft.entmax(x, 1.5000001, num_threads=th),
         lambda: ent.entmax_bisect(tx, alpha=1.5, dim=-1)),
    ]:
        g = f"{name} f32 {shape[0]}x{shape[1]}"
        out.append(Case(g, "entmax package", theirs if not miss else None, nbytes=nb, ref=True, skip=miss))
        out.append(Case(g, "probcraft", ours, nbytes=nb))

    k = 10
    g = f"topk_softmax k={k} f32 {shape[0]}x{shape[1]}"

    def torch_topk():
        v, i = torch.topk(tx, k, dim=-1)
        return torch.zeros_like(tx).scatter_(-1, i, torch.softmax(v, -1))

    out.append(Case(g, "torch.topk + softmax + scatter", torch_topk if torch is not None else None,
                    nbytes=nb, ref=True, skip=None if torch is not None else "torch not installed"))
    out.append(Case(g, "probcraft.topk_softmax", lambda: probcraft.topk_softmax(x, k, num_threads=th), nbytes=nb))

    # threads: an array larger than the last-level cache (the Sapphire Rapids VM this was last
    # tuned on reports a 260 MiB L3): 512 MiB in, 512 MiB out
    big = rng.standard_normal((32768, 4096) if not opts.quick else (1024, 4096)).astype(np.float32)
    bdst = np.empty_like(big)
    g = f"threads softmax f32 {big.shape[0]}x{big.shape[1]} ({big.nbytes >> 20} MiB)"
    out.append(Case(g, "1 thread", lambda: probcraft.softmax(big, out=bdst, num_threads=1), nbytes=big.nbytes, ref=True))
    ncpu = os.cpu_count() or 1
    for t in sorted({2, 4, 8, 16} | {ncpu}):
        if t <= ncpu:
            out.append(Case(g, f"{t} threads", lambda t=t: probcraft.softmax(big, out=bdst, num_threads=t),
                            nbytes=big.nbytes, pair="1 thread" if t == 2 else None))
    out.append(Case(g, "np.copyto 1 thread", lambda: np.copyto(bdst, big), nbytes=big.nbytes))
    return out
